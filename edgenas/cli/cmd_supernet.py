"""``edgenas supernet train`` and ``edgenas supernet eval``."""

from __future__ import annotations

from pathlib import Path

import typer

from edgenas.cli._common import emit_json, out, progress_bar
from edgenas.errors import InputError
from edgenas.textsafe import esc


def register(app: typer.Typer) -> None:
    sn_app = typer.Typer(help="Train a supernet; score sub-networks.", no_args_is_help=True)
    app.add_typer(sn_app, name="supernet", help="Train a supernet; score sub-networks.")

    @sn_app.command("train")
    def train(space: str = typer.Option("mbv3-small", "--space", help="an mbv3 space"),
              data: str = typer.Option("digits", "--data", help="'digits', a .npz file or an ImageFolder"),
              steps: int = typer.Option(None, "--steps", help="optimizer steps (or --epochs)"),
              epochs: float = typer.Option(None, "--epochs", help="epochs over the training split"),
              batch_size: int = typer.Option(64, "--batch-size", help="images per step"),
              lr: float = typer.Option(0.05, "--lr", help="peak learning rate (cosine schedule)"),
              n_random: int = typer.Option(2, "--n-random", help="random sub-networks per step (sandwich rule)"),
              seed: int = typer.Option(0, "--seed", help="random seed"),
              checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="steps between checkpoints"),
              out_dir: Path = typer.Option(Path("runs/supernet"), "--out", help="checkpoint folder"),
              resume: bool = typer.Option(False, "--resume", help="continue the training in --out"),
              json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Train a supernet (sandwich rule, resumable)."""
        from edgenas.supernet import TrainConfig, train_supernet

        if steps is None and epochs is None:
            epochs = 5.0
        cfg = TrainConfig(space=space, data=data, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                          n_random=n_random, seed=seed, checkpoint_every=checkpoint_every, out=str(out_dir))
        with progress_bar(quiet=json_out) as bar:
            path = train_supernet(cfg, resume=resume, progress=lambda done, total, *rest: bar("train", done, total))
        if json_out:
            emit_json({"checkpoint_path": str(path), "config": cfg.to_dict()})
            return
        out.print(f"supernet checkpoint: {esc(path)}")

    @sn_app.command("eval")
    def eval_(arch_file: list[Path] = typer.Argument(..., help="architecture JSON file(s)"),
              checkpoint: Path = typer.Option(Path("runs/supernet"), "--checkpoint", help="checkpoint folder"),
              data: str = typer.Option(None, "--data", help="dataset (default: the one it was trained on)"),
              json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Score architectures with supernet weights."""
        from edgenas.spaces import load_arch
        from edgenas.supernet import evaluate_subnets

        loaded = [load_arch(p) for p in arch_file]
        spaces = {s.name for s, _ in loaded}
        if len(spaces) != 1:
            raise InputError(f"architectures of several spaces given: {', '.join(sorted(spaces))}")
        space = loaded[0][0]
        acc = evaluate_subnets(checkpoint, [a for _, a in loaded], data, space=space)
        rows = [{"arch_path": str(p), "accuracy": float(x)} for p, x in zip(arch_file, acc)]
        if json_out:
            emit_json(rows)
            return
        for r in rows:
            out.print(f"{r['accuracy']:6.2f}%  {esc(r['arch_path'])}")

"""How well does a weight-sharing supernet rank sub-networks? Prints one JSON object.

On the digits demo data and the ``mbv3-small`` preset: train a supernet (sandwich rule, in-place
distillation) for ``--steps``; sample ``--n-archs`` sub-networks with ``--seed``; score each (a) with
weights inherited from the supernet and (b) trained from scratch for ``--scratch-steps`` steps of the
same batch size, learning rate and cosine schedule (standalone ``build_model`` networks). Both are
BN-recalibrated on the same training batches and measured on the same held-out split. Reports Kendall
tau and Spearman rho between (a) and (b), on accuracy and on validation cross-entropy, training throughput (sub-network images per second:
forward + backward), and peak memory (``ru_maxrss``; tracemalloc is not used since it does not see
torch's CPU tensor allocations).

    python bench/supernet_kendall.py --steps 80 --n-archs 20 --scratch-steps 40 --seed 0 [--scratch-repeat]

``--scratch-repeat`` trains each scratch network again with another seed: the tau between the two
from-scratch rankings is the baseline (the ceiling) the supernet's tau is read against.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from edgenas.spaces import get_space
from edgenas.supernet import SubnetScorer, TrainConfig, load_supernet, recalibrate_bn, train_supernet
from edgenas.supernet.extract import extract_subnet
from edgenas.supernet.model import resize
from edgenas.supernet.train import cosine_lr, load_train_data


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_scratch(space, arch, train, *, steps: int, batch_size: int, lr: float, seed: int) -> torch.nn.Module:
    """A standalone network trained like the supernet's largest path: SGD, nesterov, cosine LR."""
    torch.manual_seed(seed)
    model = space.build_model(arch).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 3e-5}, {"params": rest, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, step, steps)
        idx = torch.from_numpy(np.sort(rng.permutation(len(train))[:batch_size]))
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(resize(train.x[idx], arch.r)), train.y[idx]).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, arch, val, calib) -> tuple[float, float]:
    """(top-1 accuracy %, mean cross-entropy) on ``val`` after BN recalibration on ``calib``."""
    recalibrate_bn(model, calib, resolution=arch.r)
    correct, loss = 0, 0.0
    for i in range(0, len(val), 256):
        logits = model(resize(val.x[i:i + 256], arch.r))
        correct += int((logits.argmax(1) == val.y[i:i + 256]).sum())
        loss += float(F.cross_entropy(logits, val.y[i:i + 256], reduction="sum"))
    return 100.0 * correct / len(val), loss / len(val)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=80, help="supernet training steps")
    ap.add_argument("--n-archs", type=int, default=20)
    ap.add_argument("--scratch-steps", type=int, default=None, help="steps per scratch network (default: --steps)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-random", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores are shared)")
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--out", default=None, help="supernet checkpoint folder (default: a temporary one)")
    ap.add_argument("--scratch-repeat", action="store_true",
                    help="train every scratch network a second time with another seed: the Kendall tau between "
                         "the two is the ceiling for any ranking of these networks on this data")
    args = ap.parse_args(argv)
    scratch_steps = args.scratch_steps or args.steps
    torch.set_num_threads(args.threads)
    space = get_space("mbv3-small")
    out = Path(args.out or tempfile.mkdtemp(prefix="edgenas-kendall-"))

    cfg = TrainConfig(space=space.name, data="digits", steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, n_random=args.n_random, seed=args.seed,
                      checkpoint_every=max(1, args.steps // 2), out=str(out))
    t0 = time.perf_counter()
    ckpt = train_supernet(cfg)
    sn_time = time.perf_counter() - t0
    rss_after_supernet = peak_rss_mib()
    sn_images = args.steps * args.batch_size * (2 + args.n_random)

    rng = np.random.default_rng(args.seed)
    archs = [space.canonical(space.sample(rng)) for _ in range(args.n_archs)]
    net = load_supernet(ckpt)
    scorer = SubnetScorer(net, space, "digits", calib_batches=args.calib_batches, seed=args.seed)
    t0 = time.perf_counter()
    inherited = scorer.score(archs)
    eval_time = time.perf_counter() - t0
    extremes = scorer.score([net.largest_arch(), net.smallest_arch()])
    # the validation loss too: continuous, so it still ranks where accuracies saturate (digits)
    inherited_loss = np.asarray([accuracy(extract_subnet(net, a, space).eval(), a, scorer.val, scorer.calib)[1]
                                 for a in archs])

    train, val = load_train_data("digits", max(space.config.resolutions), 0.2)
    scratch, scratch_loss, scratch_time = [], [], 0.0
    for i, arch in enumerate(archs):
        t0 = time.perf_counter()
        model = train_scratch(space, arch, train, steps=scratch_steps, batch_size=args.batch_size,
                              lr=args.lr, seed=args.seed + i)
        scratch_time += time.perf_counter() - t0
        acc, loss = accuracy(model, arch, val, scorer.calib)
        scratch.append(acc)
        scratch_loss.append(loss)
        print(f"[{i + 1}/{len(archs)}] inherited {inherited[i]:.1f}% scratch {scratch[-1]:.1f}%",
              file=sys.stderr, flush=True)
    repeat = None
    if args.scratch_repeat:
        again = []
        for i, arch in enumerate(archs):
            model = train_scratch(space, arch, train, steps=scratch_steps, batch_size=args.batch_size,
                                  lr=args.lr, seed=args.seed + 1000 + i)
            again.append(accuracy(model, arch, val, scorer.calib)[0])
            print(f"[repeat {i + 1}/{len(archs)}] scratch {again[-1]:.1f}%", file=sys.stderr, flush=True)
        rt = stats.kendalltau(scratch, again)
        repeat = {"scratch_acc_seed2": [round(float(a), 2) for a in again], "kendall_tau": float(rt.statistic),
                  "kendall_p": float(rt.pvalue), "spearman_rho": float(stats.spearmanr(scratch, again).statistic),
                  "inherited_vs_seed2_kendall_tau": float(stats.kendalltau(inherited, again).statistic),
                  "inherited_vs_mean_kendall_tau": float(stats.kendalltau(
                      inherited, (np.asarray(scratch) + np.asarray(again)) / 2).statistic)}
    scratch = np.asarray(scratch)
    tau = stats.kendalltau(inherited, scratch)
    rho = stats.spearmanr(inherited, scratch)
    tau_loss = stats.kendalltau(inherited_loss, scratch_loss)
    result = {
        "bench": "supernet_kendall",
        "settings": {"space": space.name, "data": "digits", "steps": args.steps, "scratch_steps": scratch_steps,
                     "n_archs": args.n_archs, "batch_size": args.batch_size, "n_random": args.n_random,
                     "lr": args.lr, "seed": args.seed, "threads": args.threads,
                     "calib_batches": args.calib_batches, "train_images": len(train), "val_images": len(val)},
        "kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
        "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue),
        "kendall_tau_val_loss": float(tau_loss.statistic), "kendall_p_val_loss": float(tau_loss.pvalue),
        "spearman_rho_val_loss": float(stats.spearmanr(inherited_loss, scratch_loss).statistic),
        "inherited_acc": [round(float(a), 2) for a in inherited],
        "inherited_val_loss": [round(float(v), 4) for v in inherited_loss],
        "scratch_val_loss": [round(float(v), 4) for v in scratch_loss],
        "scratch_acc": [round(float(a), 2) for a in scratch],
        "largest_smallest_inherited_acc": [round(float(a), 2) for a in extremes],
        "supernet": {"train_s": round(sn_time, 1), "subnet_images_per_s": round(sn_images / sn_time, 1),
                     "steps_per_s": round(args.steps / sn_time, 3),
                     "params": sum(p.numel() for p in net.parameters()),
                     "final_loss_largest": load_checkpoint_loss(ckpt)},
        "scratch_train": {"total_s": round(scratch_time, 1),
                          "images_per_s": round(len(archs) * scratch_steps * args.batch_size / scratch_time, 1)},
        "inherited_eval_s_per_arch": round(eval_time / max(1, len(archs)), 2),
        "scratch_repeatability": repeat,
        "peak_rss_mib": {"after_supernet_training": round(rss_after_supernet, 1), "end": round(peak_rss_mib(), 1)},
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    return result


def load_checkpoint_loss(path: Path) -> float | None:
    history = json.loads(Path(path).read_text()).get("history") or []
    vals = [h["loss_largest"] for h in history[-5:]]
    return round(float(np.mean(vals)), 4) if vals else None


if __name__ == "__main__":
    main()

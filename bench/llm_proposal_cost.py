"""Seconds per LLM proposal: one proposal per ``generate`` call (the baseline, as before issue 14's
speed-up) vs a generation's proposals in ONE batched call that reuses the KV cache of the run's fixed
prompt prefix and computes the batch's shared history once. Same model (SmolLM2 by default), same prompts (NAS-Bench-201 parents with a history of
told mutations and a device budget), same think tokens, torch threads set explicitly; the two modes
alternate so machine load hits both alike. Prints JSON (seconds per proposal per mode and repeat,
medians, speed-up, validity of every proposal, prompt tokens, peak RSS).

Usage: nice -n 10 python bench/llm_proposal_cost.py --table ../shared/data/nb201/nb201_hw.csv --repeats 2
       (``--lora-steps 2``: also seconds per LoRA step on the batch's proposals, the CLI's LoRA settings)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np

os.environ.setdefault("EDGENAS_NO_PROGRESS", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", required=True)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch", type=int, default=8, help="proposals per generation (the CLI's llm_batch)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--think-tokens", type=int, default=None, help="default: the CLI default")
    ap.add_argument("--lora-steps", type=int, default=0,
                    help="then time this many LoRA steps (the CLI's batch and rate) on the batched proposals")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from edgenas.evaluate.tabular import load_table
    from edgenas.llm.codec import mutation_prefix, valid_mutations
    from edgenas.llm.engine import Engine
    from edgenas.llm.model import load_model, resolve_model
    from edgenas.llm.operator import LLMSettings
    from edgenas.llm.prompt import DeviceInfo, Outcome, build_prompt, shared_prompt, static_prompt
    from edgenas.spaces import get_space

    think = args.think_tokens if args.think_tokens is not None else LLMSettings().think_tokens
    max_genes = LLMSettings().max_genes
    space = get_space("nb201")
    table = load_table(args.table)
    lat = table.column("raspi4_ms", latency=True)
    budget = float(np.median(lat))
    from edgenas.evaluate.tabular import TableLatency

    dev = DeviceInfo("raspi4_ms", TableLatency(table, "raspi4_ms", space), budget)
    rng = np.random.default_rng(0)
    parents = [space.sample(rng) for _ in range(args.batch)]
    history = [Outcome(m.to_text(), "llm", bool(i % 2), float(rng.normal()))
               for i, m in enumerate(valid_mutations(space, parents[0])[:6])]
    prompts = [build_prompt(space, p, objective="cifar100_test", objectives={"cifar100_test": 70.0 + i},
                            devices=[dev], history=history, max_genes=max_genes) for i, p in enumerate(parents)]
    static = static_prompt(space, "cifar100_test", max_genes)
    shared = shared_prompt(space, "cifar100_test", history=history, max_genes=max_genes)
    head = len(mutation_prefix())
    choices = [[m.to_text()[head:] for m in valid_mutations(space, p)] for p in parents]
    t0 = time.perf_counter()
    model, tok = load_model(resolve_model(args.model))
    load_s = time.perf_counter() - t0
    eng = Engine(model, tok, threads=args.threads, think_tokens=think, max_genes=max_genes)
    from edgenas.llm.codec import Change

    def ok(o, parent):
        try:
            return space.arch_id(Change.parse(space, mutation_prefix() + o.completion, max_genes).apply(space, parent)) \
                != space.arch_id(parent)
        except Exception:  # noqa: BLE001 - counted as invalid
            return False

    runs: dict[str, list[float]] = {"one_per_call": [], "batched_cached_prefix": []}
    valid = {k: [] for k in runs}
    for r in range(args.repeats):
        t = time.perf_counter()
        out = [eng.propose(p, c, 100 * r + i) for i, (p, c) in enumerate(zip(prompts, choices))]
        runs["one_per_call"].append((time.perf_counter() - t) / len(prompts))
        valid["one_per_call"] += [ok(o, p) for o, p in zip(out, parents)]
        eng.invalidate()   # the batched mode pays for its prefix once per repeat (once per LoRA round in a run)
        t = time.perf_counter()
        out = eng.propose_many(prompts, choices, 100 * r, static=static, shared=shared)
        runs["batched_cached_prefix"].append((time.perf_counter() - t) / len(prompts))
        valid["batched_cached_prefix"] += [ok(o, p) for o, p in zip(out, parents)]
    lora_s = None
    if args.lora_steps:
        from edgenas.llm import lora

        settings = LLMSettings()
        eng.model = lora.attach(eng.model)
        eng.invalidate()
        stats = lora.train(eng, [(p, o.think, o.completion) for p, o in zip(prompts, out)], steps=args.lora_steps,
                           lr=settings.lora_lr, batch=settings.lora_batch, seed=0)
        lora_s = {"steps": args.lora_steps, "batch": settings.lora_batch,
                  "s_per_step": round(stats["seconds"] / args.lora_steps, 2)}
    med = {k: round(float(np.median(v)), 3) for k, v in runs.items()}
    print(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "model": args.model, "threads": args.threads, "batch": args.batch, "think_tokens": think, "max_genes": max_genes,
        "prompt_tokens": [len(eng.encode(eng.head(p))[0]) for p in prompts],
        "static_prefix_tokens": len(eng.encode(eng.head(static))[0]),
        "batch_shared_prefix_tokens": len(eng.encode(eng.head(shared))[0]), "model_load_s": round(load_s, 2),
        "s_per_proposal": {k: [round(x, 3) for x in v] for k, v in runs.items()}, "median_s_per_proposal": med,
        "speedup": round(med["one_per_call"] / med["batched_cached_prefix"], 2),
        "valid": {k: f"{sum(v)}/{len(v)}" for k, v in valid.items()}, "lora": lora_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=1))


if __name__ == "__main__":
    main()

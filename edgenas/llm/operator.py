"""The LLM mutation operator that strategies call (``--llm-share``), with exact replay on resume.

``mutate(parent, result)`` returns a child (or ``None``: use the usual operator this time); the
strategy later calls ``observe`` with the child's result. Successful mutations (the child ranks better
than its parent, feasibility first) go into the experience buffer with the model's reasoning; every
``lora_every`` successes the adapter takes ``lora_steps`` optimisation steps on the buffer.

Every model event is logged in ``RUN/llm/proposals.jsonl`` before it is used. A resumed run replays
the log (the strategy replays its evaluations in the same order, so the calls line up) and loads the
model only when it needs a new proposal or update; then it loads the adapter of the last logged update.
Seeds come from the operator's own generator, drawn the same way whether an event is replayed or new.
"""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgenas.errors import EdgenasError, InputError, LLMError
from edgenas.limits import is_whole, loads_json_limited
from edgenas.llm.codec import Change, Mutation, gene_specs, mutation_prefix, valid_mutations
from edgenas.llm.experience import Experience, ExperienceBuffer, JsonlLog
from edgenas.llm.prompt import DeviceInfo, Outcome, build_prompt, shared_prompt, static_prompt


#: the version of ``proposals.jsonl`` this code writes (``"log"`` of every proposal; absent: 1). Version 2 tells
#: the model a proposal its strategy replaced because the child is over a latency budget (``infeasible``);
#: a run logged in version 1 goes on without that on resume, so its replay and its continuation stay exact
LOG_VERSION = 2

#: the fields a replayed event must carry, by kind, and what each must be
_EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "proposal": {"batch": is_whole, "of": lambda v: is_whole(v) and v >= 1, "round": is_whole,
                 "parent": lambda v: isinstance(v, str), "prompt": lambda v: isinstance(v, str),
                 "think": lambda v: isinstance(v, str), "completion": lambda v: isinstance(v, str),
                 "child": lambda v: isinstance(v, dict), "valid": lambda v: isinstance(v, bool),
                 "novel": lambda v: isinstance(v, bool)},
    "lora": {"round": is_whole},
    "fallback": {},
}


def _check_event(rec: dict[str, Any], path: Path, line: int, space: Any, max_genes: int = 3) -> dict[str, Any]:
    """A line of ``proposals.jsonl`` checked before it is replayed (one error naming the line); a proposal's
    ``child`` must be an architecture of ``space`` (a bad one was an error naming neither file nor line), and
    what it says must be what the operator would have logged (``_forged``): its text reaches later prompts and
    the LoRA training data, and a run folder is anyone's to edit."""
    from edgenas.search.run import ResumeRefused

    kind = rec.get("kind")
    fields = _EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    bad = "kind" if fields is None else ("event" if not is_whole(rec.get("event")) else
                                         next((k for k, ok in fields.items() if not ok(rec.get(k))), None))
    why = ""
    if bad is None and kind == "proposal" and rec.get("log", 1) not in (1, LOG_VERSION):
        bad = "log"
    if bad is None and kind == "proposal":
        try:
            space.from_dict(rec["child"])
        except InputError as exc:
            bad, why = "child", f": {exc.message}"
    if bad is not None:
        raise ResumeRefused(f"line {line} of {path}: malformed '{bad}' of a language-model event{why}",
                            hint="the run folder is damaged; start a new run")
    wrong = _forged(rec, space, max_genes) if kind == "proposal" else None
    if wrong is not None:
        raise ResumeRefused(f"cannot resume: language-model event {rec['event']} (line {line} of {path}) is not "
                            f"what the model's answer gives: {wrong}",
                            hint="the run folder was edited or damaged; start a new run")
    return rec


def _forged(rec: dict[str, Any], space: Any, max_genes: int) -> str | None:
    """What a logged proposal says that its own parts contradict (None: nothing). Its reasoning is one line (the
    free phase ends at the first line break); its parent is an architecture id; its completion is a change
    that turns that parent into the logged child (``valid`` when the child is another network; a change that
    sets its genes to the child's values, and the parent's back, gives the parent), or text that is no
    change at all (then the child is the parent and ``valid`` is false)."""
    if "\n" in rec["think"]:
        return "its reasoning has a line break"
    try:
        parent = space.from_dict(loads_json_limited(rec["parent"], "parent"))
        same = space.arch_id(parent) == rec["parent"]
    except InputError:
        same = False
    if not same:
        return "its parent is not an architecture id"
    child = space.from_dict(rec["child"])
    change = logged_change(space, rec["completion"], max_genes)
    if change is None:
        return None if space.arch_id(child) == rec["parent"] and rec["valid"] is False else \
            "its completion is no mutation, but its child is not its parent or it is logged valid"
    specs = gene_specs(space)
    names = [s.name for s in specs]
    genes, back = space.to_genes(child), space.to_genes(parent)
    undone = genes.copy()
    for m in change.mutations:
        i = names.index(m.gene)
        value = specs[i].values[int(genes[i])]
        if type(value) is not type(m.value) or value != m.value:
            return f"its child does not have {m.gene} = {json.dumps(m.value)}"
        undone[i] = back[i]
    if space.arch_id(space.from_genes(undone)) != rec["parent"]:
        return "its completion does not turn its parent into its child"
    if rec["valid"] is not (space.arch_id(child) != rec["parent"]):
        return f"it is logged {'valid' if rec['valid'] else 'invalid'}"
    return None


def logged_change(space: Any, completion: str, max_genes: int) -> Change | None:
    """The change a logged (or just written) completion makes, or None when it is no change."""
    try:
        return Change.parse(space, completion, max_genes)
    except InputError:
        return None


#: the numeric settings' ranges (inclusive; ``_ABOVE_ZERO``: the low end excluded): a temperature of 1e-300
#: or a learning rate of 1e300 made the model's probabilities NaN at the first generation or update
_RANGES: dict[str, tuple[float, float]] = {
    "think_tokens": (0, 4096), "temperature": (0.01, 100.0), "threads": (1, 1024), "lora_every": (0, 1_000_000),
    "lora_steps": (1, 10_000), "lora_lr": (0.0, 1.0), "lora_batch": (1, 1024), "buffer_size": (1, 1_000_000),
    "history": (0, 1000), "max_genes": (1, 3)}
_ABOVE_ZERO = frozenset({"lora_lr"})
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LLMSettings:
    """Everything that shapes the operator (recorded in the run's request.json)."""

    model: str = "smollm2"
    adapter: str | None = None
    fallback: bool = False
    think_tokens: int = 16
    temperature: float = 0.8
    threads: int = 1
    lora_every: int = 4          # successes between LoRA updates (0 = no LoRA)
    lora_steps: int = 2
    lora_lr: float = 1e-3
    lora_batch: int = 4
    buffer_size: int = 32
    history: int = 3
    max_genes: int = 3           # genes one proposal may change (1..3)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _RANGES:
                low, high = _RANGES[f.name]
                want = float if f.type == "float" else int
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)):
                    kind = "a number" if want is float else "an integer"
                    raise InputError(f"LLM option {f.name}={v!r} is not {kind}")
                if not (math.isfinite(v) and low <= v <= high) or (f.name in _ABOVE_ZERO and v <= 0):
                    raise InputError(f"LLM option {f.name}={v!r} is out of range",
                                     hint=f"from {'above ' if f.name in _ABOVE_ZERO else ''}{low:g} to {high:g}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError(f"--llm-model must name a model folder, a .gguf file or smollm2, got {self.model!r}")
        if self.adapter is not None and (not isinstance(self.adapter, str) or not self.adapter.strip()):
            raise InputError(f"--llm-adapter must name an adapter folder, got {self.adapter!r}")
        if not isinstance(self.fallback, bool):
            raise InputError(f"LLM option fallback={self.fallback!r} is not true or false", hint="use --llm-fallback")
        if self.dtype not in DTYPES:
            raise InputError(f"LLM option dtype={self.dtype!r} is not one of {', '.join(DTYPES)}")

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "LLMSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown LLM option(s) {', '.join(unknown)}", hint="known: " + ", ".join(sorted(known)))
        return cls(**dict(d))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _improved(child: Any, parent: Any) -> bool:
    from edgenas.search.base import rank_key

    return rank_key(child) < rank_key(parent)


def _delta(child: Any, parent: Any) -> float:
    if not (child.feasible and parent.feasible):
        return float("nan")
    return float(parent.values[0] - child.values[0])  # values are minimised: + = better


def describe_change(space: Any, parent: Any, child: Any) -> str:
    """A child as a mutation JSON when it differs from its parent in one gene, else a short summary."""
    specs = gene_specs(space)
    gp, gc = space.to_genes(parent), space.to_genes(child)
    diff = np.flatnonzero(gp != gc)
    if 1 <= len(diff) <= 3:
        return Change(tuple(Mutation(specs[int(i)].name, specs[int(i)].values[int(gc[int(i)])])
                            for i in diff)).to_text()
    return f"{len(diff)} genes changed"


class LLMOperator:
    """See the module docstring. ``devices``: latency models and budgets shown in the prompt."""

    def __init__(self, space: Any, settings: LLMSettings, run_dir: str | Path, *, seed: int,
                 objective: str = "accuracy", devices: Sequence[DeviceInfo] = ()) -> None:
        from edgenas.llm.model import check_adapter, resolve_model

        self.space = space
        self.settings = settings
        self.dir = Path(run_dir) / "llm"
        self.objective = objective
        self.devices = list(devices)
        self.source = resolve_model(settings.model)           # bad paths fail here, before any file is written
        self.user_adapter = check_adapter(settings.adapter, self.source) if settings.adapter else None
        self.rng = np.random.default_rng([int(seed), 14])
        self.init_seed = int(np.random.default_rng([int(seed), 15]).integers(2**31 - 1))  # LoRA's initial A
        self.log = JsonlLog(self.dir / "proposals.jsonl")
        self.outcome_log = JsonlLog(self.dir / "outcomes.jsonl")
        self.replay: list[dict[str, Any]] = []
        self.logged_outcomes: set[int] = set()
        self.cursor = 0
        self.n_events = 0
        self.buffer = ExperienceBuffer(settings.buffer_size, self.dir / "experience.json")
        self.history: deque[Outcome] = deque(maxlen=max(1, 4 * settings.history))
        self.pending: dict[str, dict[str, Any]] = {}          # child arch_id -> its proposal record
        self.round = 0                                        # LoRA updates so far
        self.successes = 0                                    # successes since the last update
        self.disabled = False                                 # the model failed and fallback was allowed
        self.engine: Any = None
        self.engine_round = -1
        self.preload_error: LLMError | None = None
        self.version = LOG_VERSION                            # a resume takes its log's (``load_log``)
        self.held: list[dict[str, Any]] | None = None         # outcomes kept back while a resume replays (``hold``)
        self.evaluations: Callable[[], tuple[int, int]] | None = None   # a resume's (replayed, logged) (``hold``)

    def preload(self) -> None:
        """Load the model now (a new run: a bad model fails before anything is written). With fallback
        allowed, a failure is remembered and logged at the first proposal instead."""
        try:
            self._engine().check_finite()
        except LLMError as exc:
            if not self.settings.fallback:
                raise
            self.preload_error = exc

    def load_log(self) -> None:
        """Read what an interrupted run logged (resume); call before the search starts."""
        self.replay = [_check_event(rec, self.log.path, n, self.space, self.settings.max_genes)
                       for n, rec in enumerate(self.log.read(), 1)]
        # a batch of proposals cut short (kill -9 while it was written) is dropped: it is made again
        tail = self.replay[-1] if self.replay else None
        if tail and tail.get("kind") == "proposal" and "batch" in tail:
            first = int(tail["batch"])
            have = [r for r in self.replay if r.get("batch") == first]
            if len(have) < int(tail["of"]):
                self.replay = self.replay[: len(self.replay) - len(have)]
                self.log.keep_only(self.replay)  # on the next append: a refused resume changes nothing
        versions = {r.get("log", 1) for r in self.replay if r.get("kind") == "proposal"}
        if len(versions) > 1:
            from edgenas.search.run import ResumeRefused

            raise ResumeRefused(f"{self.log.path} mixes proposals of log versions {sorted(versions)}",
                                hint="the run folder was edited or damaged; start a new run")
        self.version = versions.pop() if versions else LOG_VERSION
        outcomes = self.outcome_log.read()
        bad = next((n for n, r in enumerate(outcomes, 1) if not is_whole(r.get("proposal"))), None)
        if bad is not None:
            raise InputError(f"line {bad} of {self.outcome_log.path} has no proposal number",
                             hint="the run folder is damaged")
        self.logged_outcomes = {int(r["proposal"]) for r in outcomes}

    def hold(self, evaluations: Callable[[], tuple[int, int]] | None = None) -> None:
        """A resumed run starts replaying its evaluations (``Strategy.replay_starts``): until ``release`` the
        operator writes nothing it need not (outcomes the log lacks are kept back, ``experience.json`` is not
        saved), so a resume refused meanwhile leaves the folder as it was. ``evaluations``: how many of the run's
        logged evaluations have replayed, and how many it holds; a new model event is refused while some are
        left (``_new_event``)."""
        self.held = []
        self.evaluations = evaluations

    def replay_pending(self) -> bool:
        """Whether logged events are still to replay (``load_log``)."""
        return self.cursor < len(self.replay)

    def release(self, check: bool = True) -> None:
        """The resumed run's replay has ended (``Strategy.replay_ends``): before its first new evaluation is
        written (the run loop keeps new evaluations back while ``replay_pending``), or at the end of the run.
        ``check``: every logged event has replayed by then; one past the end of the run (added to the log) is
        refused. Then what was kept back is written."""
        if check and self.replay_pending():
            from edgenas.search.run import ResumeRefused

            raise ResumeRefused(f"cannot resume: {self.log.path} holds {len(self.replay) - self.cursor} "
                                f"language-model event(s) past the end of the run (from event "
                                f"{self.replay[self.cursor].get('event')} on)",
                                hint="the run folder was edited or damaged; start a new run")
        held, self.held, self.evaluations = self.held, None, None
        if held:
            self.outcome_log.append_many(held)
        if held is not None and self.buffer.unsaved:
            self.buffer.save_now()

    def _outcome(self, rec: dict[str, Any]) -> None:
        """Log a proposal's outcome, or keep it back while a resume replays (``hold``)."""
        if self.held is not None:
            self.held.append(rec)
        else:
            self.outcome_log.append(rec)
        self.logged_outcomes.add(int(rec["proposal"]))

    # ----------------------------------------------------------------- events
    def _next_logged(self, kind: str, offset: int = 0) -> dict[str, Any] | None:
        if self.cursor < len(self.replay):
            rec = self.replay[self.cursor]
            if rec.get("kind") != kind or rec.get("event") != self.n_events + offset:
                raise InputError(f"cannot resume: LLM event {self.n_events} in {self.log.path} is not a "
                                 f"{kind} as the search expects on replay", hint="the code or the seed changed")
            self.cursor += 1
            return rec
        return None

    def _new_event(self) -> None:
        """The operator is to make a new event (call the model, update the adapter), found missing from the log.
        Each event is fsynced before the evaluations that follow it (a batch's proposals before its children are
        evaluated, an update before the next batch is asked), so a kill leaves the log ahead of
        ``evaluations.jsonl``, never behind: while logged evaluations are left to replay, the model's log was cut
        or edited. Refused here, before the model is loaded or anything is written (the model was called again,
        its events appended, and the resume refused later if its answers differed, or went on rewriting the
        log when they did not)."""
        if self.evaluations is None:
            return
        done, logged = self.evaluations()
        if done < logged:
            from edgenas.search.run import ResumeRefused

            raise ResumeRefused(f"cannot resume: {self.log.path} holds {len(self.replay)} language-model event(s), "
                                f"fewer than the run's evaluations need: evaluations.jsonl holds {logged}, and its "
                                f"evaluation {done} was made after event {self.n_events}, which the log lacks",
                                hint="the model's log was cut or edited; restore it from a copy of the run folder, "
                                     "or start a new run")

    def _record(self, rec: dict[str, Any]) -> dict[str, Any]:
        rec = {"event": self.n_events, **rec}
        self.log.append(rec)
        return rec

    def _fail(self, exc: EdgenasError) -> None:
        if not self.settings.fallback:
            raise exc
        self.disabled = True
        self._record({"kind": "fallback", "reason": str(exc)})
        self.n_events += 1

    def _replay_fallback(self) -> bool:
        """Whether the model is off (a logged fallback is consumed on replay)."""
        if self.cursor < len(self.replay) and self.replay[self.cursor].get("kind") == "fallback":
            self._next_logged("fallback")
            self.n_events += 1
            self.disabled = True
        return self.disabled

    def _engine(self) -> Any:
        if self.engine is None or self.engine_round != self.round:
            from edgenas.llm.engine import Engine
            from edgenas.llm.lora import attach
            from edgenas.llm.model import load_model

            model, tok = load_model(self.source, dtype=self.settings.dtype)
            if self.settings.lora_every > 0 or self.user_adapter is not None:
                adapter = self.dir / f"adapter-{self.round}" if self.round else self.user_adapter
                if self.round and (adapter.is_symlink() or not adapter.is_dir()):
                    raise InputError(f"cannot resume: {adapter} is {'a link' if adapter.is_symlink() else 'missing'}",
                                     hint="the run folder is damaged")
                import torch

                torch.manual_seed(self.init_seed)   # a new adapter's random A matrices: seeded too
                model = attach(model, adapter)
            s = self.settings
            self.engine = Engine(model, tok, threads=s.threads, temperature=s.temperature,
                                 think_tokens=s.think_tokens, max_genes=s.max_genes)
            self.engine_round = self.round
        return self.engine

    # ---------------------------------------------------------------- mutate
    def mutate(self, parent: Any, result: Any, seen: set[str] | None = None) -> Any | None:
        """A child of ``parent`` (told ``result``) written by the model, or None (fallback)."""
        return self.mutate_many([parent], [result], seen)[0]

    def mutate_many(self, parents: Sequence[Any], results: Sequence[Any],
                    seen: set[str] | None = None) -> list[Any | None]:
        """One child per parent, all from ONE batched ``generate`` call (None: use the usual operator).

        The batch is logged as consecutive ``proposal`` records that share ``batch`` (the first one's
        event number) and ``of`` (their count), written in one append; a batch cut short by kill -9 is
        dropped on resume (``load_log``), so a resumed run makes it again exactly as the first run did."""
        seed = int(self.rng.integers(2**31 - 1))
        out: list[Any | None] = [None] * len(parents)
        if self._replay_fallback():
            return out
        rows = [i for i, p in enumerate(parents) if valid_mutations(self.space, p)]
        if not rows:
            return out
        pids = [self.space.arch_id(parents[i]) for i in rows]
        first = self._next_logged("proposal")
        if first is not None:
            recs = [first] + [self._next_logged("proposal", offset=k) for k in range(1, len(rows))]
            # one logged batch, of these parents (a batch replayed in parts, or two as one, was no error)
            if any(r is None for r in recs) or [(r["parent"], r["batch"], r["of"]) for r in recs] != [
                    (p, self.n_events, len(rows)) for p in pids]:
                raise InputError(f"cannot resume: LLM proposals {self.n_events}.. were made in another batch or "
                                 "for other parents", hint="the code or the seed changed")
            self._check_replayed(recs, [parents[i] for i in rows], [results[i] for i in rows])
        else:
            self._new_event()
            if self.preload_error is not None:
                self._fail(self.preload_error)
                return out
            made = self._propose([parents[i] for i in rows], [results[i] for i in rows], seed, seen or set())
            if made is None:
                return out
            recs = made
        batch: dict[str, dict[str, Any]] = {}
        for i, rec in zip(rows, recs):
            child = self.space.from_dict(rec["child"])
            # the same child twice in one batch: a strategy takes the first (the second is no longer novel),
            # so its outcome and its reasoning are the first proposal's (the last one's were credited)
            batch.setdefault(self.space.arch_id(child), rec)
            out[i] = child
        self.pending.update(batch)  # a newer batch's proposal of a child replaces an older one's
        self.n_events += len(recs)
        return out

    def _prompts(self, parents: Sequence[Any], results: Sequence[Any]) -> list[str]:
        """The prompt of each parent, built from the search's own state (never from logged text)."""
        prompts = []
        for parent, result in zip(parents, results):
            objectives = {self.objective: -result.values[0]} if np.isfinite(result.values[0]) else {}
            prompts.append(build_prompt(self.space, parent, objective=self.objective, objectives=objectives,
                                        devices=self.devices, history=list(self.history),
                                        n_history=self.settings.history, max_genes=self.settings.max_genes))
        return prompts

    def _check_replayed(self, recs: Sequence[dict[str, Any]], parents: Sequence[Any], results: Sequence[Any]) -> None:
        """Replayed proposals must be what this run would log: the child their completion makes of the parent
        (``_check_event`` saw only the parent's id), and the prompt built here; else the resume is refused before
        the operator writes anything (``observe`` saves nothing while events are replayed)."""
        from edgenas.search.run import ReplayMismatch

        for rec, parent, prompt in zip(recs, parents, self._prompts(parents, results)):
            change = logged_change(self.space, rec["completion"], self.settings.max_genes)
            child = parent if change is None else change.apply(self.space, parent)
            what = ("child" if self.space.to_dict(child) != rec["child"] else
                    "prompt" if prompt != rec["prompt"] else None)
            if what is not None:
                raise ReplayMismatch(f"cannot resume: the {what} of LLM event {rec['event']} in {self.log.path} is "
                                     "not the one the search makes on replay",
                                     hint="the run folder was edited, or the code or the seed changed; start a new run")

    def _propose(self, parents: Sequence[Any], results: Sequence[Any], seed: int,
                 seen: set[str]) -> list[dict[str, Any]] | None:
        static = static_prompt(self.space, self.objective, self.settings.max_genes)
        prompts, choices = self._prompts(parents, results), []
        head = len(mutation_prefix())
        for parent in parents:
            choices.append([m.to_text()[head:] for m in valid_mutations(self.space, parent)])
        try:
            shared = shared_prompt(self.space, self.objective, history=list(self.history),
                                   n_history=self.settings.history, max_genes=self.settings.max_genes)
            props = self._engine().propose_many(prompts, choices, seed, static=static, shared=shared)
        except LLMError as exc:
            self._fail(exc)
            return None
        recs = []
        rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        earlier: set[str] = set()  # this batch's children so far: a second proposal of one child is not novel
        for k, (parent, prompt, p) in enumerate(zip(parents, prompts, props)):
            text = mutation_prefix() + p.completion
            try:
                child = Change.parse(self.space, text, self.settings.max_genes).apply(self.space, parent)
                valid = self.space.arch_id(child) != self.space.arch_id(parent)
            except InputError:
                child, valid = parent, False
            cid = self.space.arch_id(child)
            novel = valid and cid not in seen and cid not in earlier
            earlier.add(cid)
            recs.append({"event": self.n_events + k, "kind": "proposal", "batch": self.n_events, "of": len(parents),
                         "parent": self.space.arch_id(parent), "seed": seed, "round": self.round, "prompt": prompt,
                         "think": p.think, "completion": text, "valid": valid, "novel": novel,
                         "child": self.space.to_dict(child), "seconds": round(p.seconds, 4), "tokens": p.tokens,
                         "dead_ends": p.dead_ends, "peak_rss_mb": rss,
                         **({"log": self.version} if self.version > 1 else {})})
        self.log.append_many(recs)
        return recs

    # --------------------------------------------------------------- observe
    def observe(self, parent: Any, child: Any, parent_result: Any, child_result: Any, source: str) -> None:
        """The result of a child (from the model or the usual operators) vs its parent's."""
        improved = _improved(child_result, parent_result)
        delta = _delta(child_result, parent_result)
        change = describe_change(self.space, parent, child)
        rec = self.pending.pop(self.space.arch_id(child), None) if source == "llm" else None
        made = logged_change(self.space, rec["completion"], self.settings.max_genes) if rec is not None else None
        if rec is not None:
            change = made.to_text() if made is not None else change   # checked text, never the log's own
            n = int(rec["event"])
            if n not in self.logged_outcomes:
                self._outcome({"proposal": n, "round": rec["round"], "improved": improved,
                               "delta": None if np.isnan(delta) else delta})
        self.history.append(Outcome(change, source, improved, delta))
        # a resume refused later must find experience.json as it was (``release`` saves it)
        replaying = self.held is not None or self.cursor < len(self.replay)
        if not replaying and self.buffer.unsaved:
            self.buffer.save_now()
        if rec is None or made is None or not improved:
            return
        self.buffer.add(Experience(int(rec["event"]), rec["prompt"], rec["think"],
                                   change[len(mutation_prefix()):], delta), save=not replaying)
        self.successes += 1
        if self.settings.lora_every and self.successes >= self.settings.lora_every:
            self.successes = 0
            self._update()

    def infeasible(self, child: Any) -> None:
        """A model's child that its strategy replaced by a usual mutation because it is over a latency budget
        (valid and novel, never evaluated): its outcome is logged (``infeasible``) and the model is told it
        failed, as an infeasible evaluated child is (log version 2; a run of version 1 goes on as it was)."""
        if self.version < 2:
            return
        rec = self.pending.pop(self.space.arch_id(child), None)
        made = logged_change(self.space, rec["completion"], self.settings.max_genes) if rec is not None else None
        if made is None:
            return
        n = int(rec["event"])
        if n not in self.logged_outcomes:
            self._outcome({"proposal": n, "round": rec["round"], "improved": False, "delta": None,
                           "infeasible": True})
        self.history.append(Outcome(made.to_text(), "llm", False, float("nan")))

    def _update(self) -> None:
        from edgenas.llm import lora

        seed = int(self.rng.integers(2**31 - 1))
        if self._replay_fallback():
            return
        rec = self._next_logged("lora")
        if rec is None:
            self._new_event()
            s = self.settings
            try:
                engine = self._engine()
                engine.invalidate()   # the cached prompt prefix belongs to the old weights
                stats = lora.train(engine, [(e.prompt, e.think, e.completion) for e in self.buffer],
                                   steps=s.lora_steps, lr=s.lora_lr, batch=s.lora_batch, seed=seed)
            except LLMError as exc:
                self._fail(exc)
                return
            folder = lora.save(engine.model, self.dir / f"adapter-{self.round + 1}")
            self._record({"kind": "lora", "round": self.round + 1, "seed": seed, "adapter": folder.name,
                          "buffer": len(self.buffer), **{k: round(v, 5) for k, v in stats.items()},
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
            self.engine_round = self.round + 1   # the loaded model already carries this update
            old = self.dir / f"adapter-{self.round - 1}"
            if self.round - 1 >= 1 and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        self.n_events += 1
        self.round += 1

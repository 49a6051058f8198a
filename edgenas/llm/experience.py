"""What the LLM operator keeps in the run folder (``RUN/llm/``), so a resumed run is exact.

* ``proposals.jsonl``: one line per model event in call order: ``proposal`` (the prompt, the model's
  reasoning, its JSON, the child), ``lora`` (an adapter update) and ``fallback`` (the model failed and
  the user allowed the usual operators). On resume these are replayed; the model is never called for
  them. A torn last line (kill -9) is cut off.
* ``outcomes.jsonl``: per proposal, whether the child improved on its parent (for the statistics).
* ``experience.json``: the FIFO buffer of successful mutations with their whole reasoning trace, which
  the LoRA updates train on.
* ``adapter-K/``: the LoRA adapter after update ``K`` (the two latest are kept).
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, atomic_write_text, read_json
from edgenas.limits import is_number, is_schema, is_whole, loads_json_limited


class JsonlLog:
    """An append-only JSON-lines file, flushed and fsynced per line; created on the first append.

    Reading changes nothing: a torn last line (kill -9), or records dropped with ``keep_only``, leave the file
    on the next append (a resume refused after reading left the folder changed; a report reading a run cut it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._whole: int | None = None                  # the bytes of whole lines, when a torn one follows
        self._kept: list[dict[str, Any]] | None = None  # what the file is to hold before the next append

    def read(self) -> list[dict[str, Any]]:
        from edgenas.io import read_log_bytes

        data = read_log_bytes(self.path)
        if data is None:
            return []
        end = data.rfind(b"\n") + 1
        self._whole = end if end < len(data) else None
        out = []
        for n, line in enumerate(data[:end].splitlines(), start=1):
            try:  # depth-limited: a line of 100,000 nested lists was a RecursionError (an internal error)
                rec = loads_json_limited(line, f"line {n} of {self.path}")
            except InputError:  # bad JSON or UTF-8, too deep, a 4,300-digit int
                raise InputError(f"malformed line {n} in {self.path}", hint="the run folder is damaged") from None
            if not isinstance(rec, dict):
                raise InputError(f"line {n} of {self.path} is not a JSON object", hint="the run folder is damaged")
            out.append(rec)
        return out

    def append(self, rec: dict[str, Any]) -> None:
        self.append_many([rec])

    def keep_only(self, recs: list[dict[str, Any]]) -> None:
        """The file is to hold ``recs`` (a torn batch dropped on resume): rewritten before the next append."""
        self._kept = list(recs)

    def append_many(self, recs: list[dict[str, Any]]) -> None:
        """Append records in one write (one fsync), after what ``read`` and ``keep_only`` left to do."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._kept is not None:
            self.rewrite(self._kept)
        elif self._whole is not None:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._whole)
        self._kept = self._whole = None
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(rec, sort_keys=True) + "\n" for rec in recs))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, recs: list[dict[str, Any]]) -> None:
        """Replace the file by ``recs`` atomically (a torn batch dropped on resume). The temporary file is a new
        one of its own (``atomic_write_text``): a link planted at a fixed ``proposals.jsonl.tmp`` was written
        through, and the file it pointed at overwritten."""
        atomic_write_text(self.path, "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in recs))


@dataclass(frozen=True)
class Experience:
    """A successful mutation: what the model read and wrote, and how much it improved the objective."""

    proposal: int
    prompt: str
    think: str
    completion: str
    delta: float


_FIELDS = {f.name for f in fields(Experience)}


class ExperienceBuffer:
    """A FIFO of the last ``size`` successful mutations, saved atomically as JSON."""

    def __init__(self, size: int, path: Path | None = None) -> None:
        self.items: deque[Experience] = deque(maxlen=size)
        self.path = path
        self.unsaved = False   # added to since the last save (``add(save=False)``: a resume's replay)

    def add(self, item: Experience, save: bool = True) -> None:
        self.items.append(item)
        self.unsaved = True
        if save:
            self.save_now()

    def save_now(self) -> None:
        """Save to ``path`` (if it has one)."""
        if self.path is not None:
            self.save(self.path)
        self.unsaved = False

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, "size": self.items.maxlen, "items": [asdict(x) for x in self.items]}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "ExperienceBuffer":
        d = read_json(path, "experience buffer")
        if not isinstance(d, dict) or not is_schema(d.get("schema"), 1) or not isinstance(d.get("items"), list):
            raise InputError(f"{path}: not an experience buffer of schema 1")
        size = d.get("size")
        if not is_whole(size) or not 1 <= size <= 1_000_000:  # buffer_size's range: a KeyError, a deque's errors
            raise InputError(f"{path}: the experience buffer's size {size!r} is not a whole number from 1 to 1000000")
        buf = cls(size, None)
        for n, x in enumerate(d["items"], 1):
            if not (isinstance(x, dict) and set(x) == _FIELDS and is_whole(x["proposal"])
                    and all(isinstance(x[k], str) for k in ("prompt", "think", "completion"))
                    and is_number(x["delta"])):
                raise InputError(f"{path}: malformed experience entry {n}",
                                 hint="each has a whole proposal number, three texts and a delta")
            buf.items.append(Experience(**x))
        buf.path = path
        return buf


def read_all(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The LLM files of a run folder: proposals, outcomes, experience (for statistics and tests)."""
    d = Path(run_dir) / "llm"
    exp = d / "experience.json"
    return {"proposals": JsonlLog(d / "proposals.jsonl").read(),
            "outcomes": JsonlLog(d / "outcomes.jsonl").read(),
            "experience": read_json(exp, "experience buffer") if exp.exists() else None}


def share(xs: Iterable[bool]) -> float | None:
    xs = list(xs)
    return sum(map(bool, xs)) / len(xs) if xs else None


def summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Counts and shares of a run's LLM proposals (None when the run used no language model)."""
    if not (Path(run_dir) / "llm").is_dir():
        return None
    d = read_all(run_dir)
    props = [p for p in d["proposals"] if p.get("kind") == "proposal"]
    used = [o for o in d["outcomes"] if not o.get("infeasible")]
    logs_infeasible = not props or all(p.get("log", 1) >= 2 for p in props)
    return {"proposals": len(props), "valid": share(p.get("valid") for p in props),
            "novel": share(p.get("novel") for p in props),
            # of the model's children that were evaluated (``used``), not of all proposals
            "improving": share(o.get("improved") for o in used),
            "used": len(used), "replaced": len(props) - len(used),
            # of the replaced: valid and novel but over a latency budget (None: the log, of version 1, says not)
            "infeasible": sum(bool(o.get("infeasible")) for o in d["outcomes"]) if logs_infeasible else None,
            "lora_updates": sum(p.get("kind") == "lora" for p in d["proposals"]),
            "fallbacks": sum(p.get("kind") == "fallback" for p in d["proposals"])}

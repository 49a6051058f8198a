"""Timing many models over several fresh sessions each: the LUT protocol's sweep mode (``sessions`` >= 2).

A runtime session's speed for a block is fixed when the session is created and differs from one
session to the next: within a session, windows of 100 runs agree to a few tenths of a percent, but the
same block opened again runs a few percent (for single blocks up to 20-50%) faster or slower for as
long as that session lives (measured under ONNX Runtime, bench/RESULTS.md, issue 17; the cause, likely
memory placement, was not measured). One session timed for long, as Once-for-All's 500 runs do,
measures that session, not the block. So ``bench_many`` in this mode takes its models in *sweeps*:

1. in each sweep every model still active is opened in a **fresh** runtime session, warmed up
   (``warmup_min_n`` runs and ``warmup_min_s`` seconds), timed back to back until the session has
   ``session_min_n`` single-run samples and ``session_min_s`` seconds of them, and closed again;
   with a speed reference, the reference is timed the same way (a fresh session of its own, warm-up,
   the session's minimums) before each sweep, and each sample's ratio divides it by the median of that
   sweep's reference session: the reference's session effect is averaged over the sweeps as well;
2. **stopping rule** (``interleave.verdict``, after each sweep from the ``sessions``-th on, per model):
   stable once the pooled samples number ``min_n``, its own time is ``min_s`` and the spread rule holds
   for the samples and (with a reference) the ratios; unstable when its own time (session opening,
   warm-up and samples) reaches ``max_s``; otherwise one more sweep;
3. **budget for the extra sweeps**: the sweeps after the ``sessions``-th may take at most
   ``extra_share`` x the time the first ``sessions`` sweeps took (reference sessions included). In
   each extra sweep the models whose pooled median is least certain (the wider relative 95% CI of
   samples and ratios) go first; a model whose next session would not fit in what is left ends there,
   ``stable: false``. Where sessions disagree a lot, nearly every model wants more sessions, and
   without the budget the call takes up to ``max_s`` per model instead of about ``sessions``
   sessions' worth (bench/RESULTS.md, issue 17).

A model's median is that of its pooled samples: over ``sessions`` sessions, spread over the whole
call's time (a sweep of 24 blocks takes 0.1-0.3 s), so neither one session's placement nor a passing
slow spell decides it. Samples are single runs, or ``runs_per_sample`` back-to-back runs each where a
runtime's calls overlap on the device (``measure.py``); ``sample_target_ms`` is not used.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Set

from . import interleave, stats
from .interleave import Timer, Track


#: single runs taken back to back between two clock readings while a session samples
_CHUNK = 10


class SweepTrack(Track):
    """A model during the sweeps: a ``Track`` whose timer changes with each fresh session."""

    def __init__(self, key: str) -> None:
        super().__init__(key, _no_session)
        self.sessions = 0
        self.last_session_s = 0.0  # the own time of its latest session (opening, warm-up, samples)

    def ci_width(self) -> float:
        """The wider relative 95% CI of the pooled median, of samples and of ratios (inf if unknown)."""
        widths = [stats.spread(xs)[1] for xs in (self.samples, self.ratios) if len(xs) >= 2]
        if not widths or any(w is None for w in widths):
            return float("inf")
        return max(widths)

    def result(self, k: int = 1) -> Dict[str, Any]:
        """``Track.result`` plus ``sessions``: how many fresh sessions the samples came from."""
        out = super().result(k)
        out["sessions"] = self.sessions
        return out


def _no_session(k: int) -> float:
    raise RuntimeError("a sweep track is timed only through a session")


class Session(Protocol):
    """What the sweep needs of an open runtime session (``runtimes.open_runner`` returns one)."""

    timer: Timer

    def close(self) -> None: ...


def time_session(track: SweepTrack, timer: Timer, proto: Mapping[str, Any], ref_value: Optional[float],
                 clock: Callable[[], float] = time.perf_counter) -> None:
    """Warm ``timer`` (a fresh session) up, then sample it into ``track`` until the session's minimums."""
    track.timer = timer
    last = interleave.warm_up(track, proto, clock)
    t0 = clock()
    samples: List[float] = []
    # samples in tight runs of up to _CHUNK (about 1 ms) with the clock read between them, as fixed_n
    # takes its runs: Python work between two runs of a 10-20 us block shows in its time
    runs = int(proto.get("runs_per_sample", 1))
    chunk = max(1, min(int(proto["session_min_n"]), _CHUNK, int(0.001 / max(last * runs, 1e-9))))
    while True:
        samples.extend([timer(runs) / runs for _ in range(chunk)])
        elapsed = clock() - t0
        if (len(samples) >= proto["session_min_n"] and elapsed >= proto["session_min_s"]) \
                or len(track.samples) + len(samples) >= interleave.MAX_SAMPLES \
                or track.spent_s + elapsed >= proto["max_s"]:
            break
    track.spent_s += elapsed
    track.record(samples, ref_value)


def _timed_in(track: SweepTrack, open_session: Callable[[], Session], proto: Mapping[str, Any],
              ref_value: Optional[float], clock: Callable[[], float]) -> None:
    """Open a fresh session, time ``track`` in it (opening counts as its own time), close it."""
    before = track.spent_s
    t0 = clock()
    session = open_session()
    try:
        track.spent_s += clock() - t0
        time_session(track, session.timer, proto, ref_value, clock)
    finally:
        session.close()
    track.sessions += 1
    track.last_session_s = track.spent_s - before


def run_sweeps(keys: List[str], open_session: Callable[[str], Session], proto: Mapping[str, Any],
               open_reference: Optional[Callable[[], Session]] = None,
               on_done: Optional[Callable[[List[SweepTrack]], None]] = None,
               clock: Callable[[], float] = time.perf_counter) -> List[SweepTrack]:
    """Sweeps over ``keys`` until each has a verdict; ``on_done`` gets each sweep's finished tracks.

    ``open_session(key)`` opens a fresh runtime session on that model, ``open_reference()`` one on the
    speed reference; each is closed before the next is opened. Returns the tracks in the order they
    finished."""
    active = [SweepTrack(key) for key in keys]
    finished: List[SweepTrack] = []
    sweep = 0
    t_start = clock()
    extra_until: Optional[float] = None  # the clock reading by which the extra sweeps must end
    ref_s = 0.0  # the own time of the latest reference session
    while active:
        sweep += 1
        if sweep == proto["sessions"] + 1:
            now = clock()
            extra_until = now + proto["extra_share"] * (now - t_start)
        if extra_until is not None:
            active.sort(key=SweepTrack.ci_width, reverse=True)  # the least certain first
        fits = functools.partial(_fits, extra_until=extra_until, clock=clock)
        ref_value = None
        can_time = any(fits(track, ref_s) for track in active)  # the reference's session, then one model's
        if open_reference is not None and can_time:
            ref = SweepTrack("reference")
            _timed_in(ref, open_reference, proto, None, clock)
            ref_value, ref_s = max(stats.median(ref.samples), 1e-12), ref.last_session_s
        left_out: Set[str] = set()
        for track in active:
            if not (can_time and fits(track, 0.0)):
                left_out.add(track.key)
                continue
            _timed_in(track, functools.partial(open_session, track.key), proto, ref_value, clock)
        judge = functools.partial(_judge, proto=proto, sweep=sweep, left_out=left_out)
        active = interleave.retire(active, finished, judge, on_done)
    return finished


def _fits(track: SweepTrack, before_s: float, extra_until: Optional[float], clock: Callable[[], float]) -> bool:
    """Whether another session of ``track`` as long as its latest, after ``before_s`` of other work, ends
    by ``extra_until`` (None: no budget yet)."""
    return extra_until is None or clock() + before_s + track.last_session_s <= extra_until


def _judge(track: SweepTrack, proto: Mapping[str, Any], sweep: int, left_out: Set[str]) -> Optional[bool]:
    """The stopping rule after a sweep; before the ``sessions``-th only the time cap ends a track. A
    track the budget left out of this sweep ends unstable: it has no new samples since the rule last
    said "go on" (left out only in extra sweeps, after that judgement)."""
    if track.key in left_out:
        return False
    if sweep >= proto["sessions"]:
        return interleave.verdict(track.samples, track.ratios, track.spent_s, proto)
    return False if track.spent_s >= proto["max_s"] else None

"""The short timing protocol tests profile with: a few samples per block, a fraction of a second at most.

Real timings still (ONNX Runtime on this machine), only fewer of them than a table a user builds."""

from __future__ import annotations

FAST = {"warmup_min_n": 3, "warmup_min_s": 0.01, "min_n": 5, "min_s": 0.02, "max_s": 0.3}

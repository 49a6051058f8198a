"""Whether a process a test started is still running (a zombie, ended but not yet reaped, is not)."""

from __future__ import annotations


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False

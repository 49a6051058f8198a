"""The one small hierarchy of errors meant for users.

Every error a user can cause or fix (bad input, an unreachable device, an impossible budget) is an
``EdgenasError`` whose message says what is wrong and whose ``hint`` says what to do. The CLI prints
``str(err)`` as one red line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class EdgenasError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(EdgenasError):
    """Malformed or unknown user input: architecture, profile, LUT, ONNX file, space, device, flag."""

    exit_code = 2


class DeviceError(EdgenasError):
    """Something went wrong on or on the way to a device; always names the device."""

    exit_code = 3

    def __init__(self, device: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"device '{device}': {message}", hint=hint)
        self.device = device


class BadAnswerError(DeviceError):
    """The device answered, but what it said is malformed or impossible (a statistic of 0 ms, a field of the
    wrong type): the device is not to be trusted for this command, so what it measured before is dropped too
    (``fleet.fewshot.add_fewshot``), unlike after a lost connection."""


class HostKeyError(DeviceError):
    """The device's SSH host key is unknown or changed: ``host`` (its known_hosts name), the offered
    ``key_type`` and ``fingerprint``, and the ``known_fingerprints`` recorded for that host (if any)."""

    def __init__(self, device: str, message: str, *, host: str = "", key_type: str = "", fingerprint: str = "",
                 known_fingerprints: tuple[str, ...] = (), hint: str | None = None) -> None:
        super().__init__(device, message, hint=hint)
        self.host, self.key_type, self.fingerprint = host, key_type, fingerprint
        self.known_fingerprints = list(known_fingerprints)


class AgentError(DeviceError):
    """The agent answered a call with a structured error ``{"type", "message"}``."""

    def __init__(self, device: str, type_: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(device, f"agent error {type_}: {message}", hint=hint)
        self.type = type_
        self.agent_message = message


class RuntimeMissingError(DeviceError):
    """The requested runtime (onnxruntime, tensorrt, torch) is not available on the device."""


class InfeasibleError(EdgenasError):
    """A latency budget no architecture of the space can meet."""

    exit_code = 4

    def __init__(self, message: str, *, min_latency_ms: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.min_latency_ms = min_latency_ms


class JointInfeasibleError(InfeasibleError):
    """Latency budgets that each device can meet alone but no architecture meets together (exit 4, as one too
    low; ``edgenas.search.joint``). ``budgets``: the budgets in ms, by device; ``needed``: per device, the
    smallest budget there that an architecture meeting every other budget takes (where one does; known in a
    listed space only); ``min_latency_ms``: the smallest of the devices' minima (what ``InfeasibleError``
    carries)."""

    def __init__(self, message: str, *, budgets: dict[str, float], needed: dict[str, float],
                 min_latency_ms: float, hint: str | None = None) -> None:
        super().__init__(message, min_latency_ms=min_latency_ms, hint=hint)
        self.budgets = dict(budgets)
        self.needed = dict(needed)


class ExportError(EdgenasError):
    """Export failed a check (ONNX checker, parity with PyTorch beyond tolerance, TensorRT build)."""

    exit_code = 5


class OutputError(EdgenasError):
    """An output path cannot be written: it is a file, lies under one, is not writable, the disk is full,
    or another edgenas process holds it."""

    exit_code = 6


class SearchInterrupted(EdgenasError):
    """Ctrl-C during a search: the run folder is complete up to the last evaluation and resumable."""

    exit_code = 130


class LLMError(EdgenasError):
    """The language model could not be loaded or run (not installed, out of memory, a failed load)."""

    exit_code = 6


class LLMInputError(LLMError):
    """A model or adapter the user named is not one: a missing path, a folder without ``config.json``, a
    file that is not GGUF, an adapter for another base model, a damaged or non-finite model. Bad input
    (exit 2), still an ``LLMError`` for the code that catches those."""

    exit_code = 2

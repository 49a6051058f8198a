"""Errors raised by the exporters.

``exporters`` imports neither ``edgenas`` nor ``device_agents`` (see DESIGN.md), so it has its own
tiny hierarchy; the host side wraps ``ExportCheckError`` into ``edgenas.errors.ExportError`` and the
device agent turns it into a structured ``{"type", "message"}`` error. Python 3.8 compatible: the
device agent ships this module in its zipapp.
"""

from typing import Optional


class ExportCheckError(Exception):
    """An export or a check of an exported artifact failed.

    ``message`` says what is wrong (naming the file where there is one), ``hint`` what to do.
    ``str(err)`` is a single line.
    """

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        message = " ".join(str(message).split())  # one line, whatever the underlying library said
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return "{} ({})".format(self.message, self.hint) if self.hint else self.message


class TensorRTMissing(ExportCheckError):
    """TensorRT (or a CUDA Python binding it needs to run an engine) is not importable here."""

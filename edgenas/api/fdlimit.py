"""``edgenas serve`` out of file descriptors (``ulimit -n``): the environment, told as such, without a flood.

A request whose files cannot be opened is a 503 ``{"error": "too many open files", ...}`` (it was a 400
"cannot read run record" or a 500 "internal error"). asyncio's accept loop, out of descriptors, logs a
traceback per failed ``accept()`` (thousands in a burst); ``loop_errors`` makes each kind of loop error one
line on stderr at most every ``EVERY_S`` seconds, with the count of those it held back."""

from __future__ import annotations

import errno
import sys
import threading
import time
from typing import Any

from edgenas.errors import EdgenasError
from edgenas.outdirs import FD_ERRNOS, fds_exhausted, out_of_fds

ERROR = {"error": "too many open files",
         "hint": "raise the server's limit on open files (ulimit -n) or send fewer requests at once; "
                 "then try again"}
#: asyncio's accept() gives up on these (and retries a second later): no descriptor or no memory for one
ACCEPT_ERRNOS = FD_ERRNOS | {errno.ENOBUFS, errno.ENOMEM}
EVERY_S = 10.0

_lock = threading.Lock()
_last: dict[str, tuple[float, int]] = {}  # kind of notice -> (when it was last printed, how many held back since)


def notice(kind: str, line: str) -> None:
    """``line`` on stderr, unless a notice of this ``kind`` was printed in the last ``EVERY_S`` seconds."""
    now = time.monotonic()
    with _lock:
        when, held = _last.get(kind, (-EVERY_S, 0))
        if now - when < EVERY_S:
            _last[kind] = (when, held + 1)
            return
        _last[kind] = (now, 0)
    more = f" ({held} more like it since the last)" if held else ""
    try:
        print(f"edgenas serve: {line}{more}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed or full: the answer still goes out
        pass


def response_for(exc: BaseException) -> Any:
    """The 503 for an error caused by running out of descriptors, else None. An error that names no errno (a
    lazy import that could not open its file: "ImportError: cannot import name ...") counts when no file can
    be opened now either."""
    if out_of_fds(exc) is None and (isinstance(exc, EdgenasError) or fds_exhausted() is None):
        return None
    from fastapi.responses import JSONResponse

    notice("fds", "too many open files: requests get 503 until some close (raise the limit: ulimit -n)")
    return JSONResponse(ERROR, status_code=503, headers={"Retry-After": "1"})


def loop_errors(loop: Any, context: dict[str, Any]) -> None:
    """The event loop's exception handler: one rate-limited line instead of a traceback per error."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS:
        notice("accept", f"cannot accept connections ({exc.strerror}): they wait until some close "
                         "(raise the limit: ulimit -n)")
        return
    what = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    message = str(context.get("message") or "error in the event loop")
    notice(message, f"{message}{': ' + what if what else ''}"[:300])

"""No traceback reaches the terminal from any thread.

paramiko's transport thread logs a failed handshake (a port that accepts TCP but never speaks SSH) at
ERROR level with a full traceback through the ``paramiko.transport`` logger. With no logging configured,
Python's last-resort handler printed that traceback on stderr, after edgenas' own one-line error, in
some runs. The failure itself reaches the user as that one line (``connect._connect_error`` reads the
transport's ``saved_exception``), so paramiko's log goes to a ``NullHandler`` unless the application
configured logging itself (its handlers on the root logger still receive the records).

``install_thread_hook`` (used by the CLI) turns an uncaught exception in any other thread into one
line on stderr instead of a traceback. ``sigint_ignored`` holds Ctrl-C off for a short block that must
not be cut in the middle.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_done: list[bool] = []


def silence_library_logs() -> None:
    if not _done:
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        _done.append(True)


def install_thread_hook() -> None:
    import os

    def hook(args: threading.ExceptHookArgs) -> None:
        if os.environ.get("EDGENAS_DEBUG"):
            return threading.__excepthook__(args)
        if args.exc_type is SystemExit:
            return None
        from edgenas.textsafe import one_line

        name = args.thread.name if args.thread is not None else "?"
        sys.stderr.write(one_line(f"edgenas: background thread {name} stopped: {args.exc_type.__name__}: "
                                  f"{args.exc_value}", 300) + "\n")
        return None

    threading.excepthook = hook


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C in this process for the block (from the main thread only: Python sets handlers there;
    elsewhere the block runs as it is). A Ctrl-C during the block is dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

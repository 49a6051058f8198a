"""No traceback reaches the terminal from any thread.

paramiko's transport thread logs a failed handshake (a port that accepts TCP but never speaks SSH) at
ERROR level with a full traceback through the ``paramiko.transport`` logger. With no logging configured,
Python's last-resort handler printed that traceback on stderr, after edgenas' own one-line error, in
some runs. The failure itself reaches the user as that one line (``connect._connect_error`` reads the
transport's ``saved_exception``), so paramiko's log goes to a ``NullHandler`` unless the application
configured logging itself (its handlers on the root logger still receive the records).

``install_thread_hook`` (used by the CLI) turns an uncaught exception in any other thread into one
line on stderr instead of a traceback. ``sigint_ignored`` holds Ctrl-C off for a short block that must
not be cut in the middle. ``install_sigterm_handler`` gives SIGTERM Ctrl-C's path.
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
    from edgenas.envflags import env_flag

    def hook(args: threading.ExceptHookArgs) -> None:
        if env_flag("EDGENAS_DEBUG"):
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
    elsewhere the block runs as it is). A Ctrl-C during the block is dropped; a SIGTERM (``on_sigterm``) is
    held until the block ends, then takes effect."""
    with _deferred(keep_ctrl_c=False):
        yield


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM taking its path, ``on_sigterm``) until the block ends, then deliver it: for
    native code that must not be interrupted half way (torch's import aborted the process with a C++
    "terminate called" when a KeyboardInterrupt reached it). Main thread only, as ``sigint_ignored``."""
    with _deferred(keep_ctrl_c=True):
        yield


@contextmanager
def _deferred(*, keep_ctrl_c: bool) -> Iterator[None]:
    """Ctrl-C recorded (``keep_ctrl_c``) or ignored for the block, a SIGTERM taking ``on_sigterm``'s path
    recorded; what was recorded takes effect when the block ends (a Ctrl-C only where it was not ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def record(signum: int, _frame: object) -> None:
        held.append(signum)

    previous = signal.signal(signal.SIGINT, record if keep_ctrl_c else signal.SIG_IGN)
    term = signal.getsignal(signal.SIGTERM)
    if term is on_sigterm:
        signal.signal(signal.SIGTERM, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if term is on_sigterm:
            signal.signal(signal.SIGTERM, term)
    if signal.SIGTERM in held:
        on_sigterm(signal.SIGTERM, None)
    if signal.SIGINT in held and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt


#: set when a SIGTERM arrived: the CLI says "terminated" and exits 143 instead of 130
_terminated: list[bool] = []


def terminated() -> bool:
    return bool(_terminated)


def on_sigterm(_signum: int, _frame: object) -> None:
    """SIGTERM (a job scheduler, ``kill``, systemd) takes Ctrl-C's path: the cleanup of ``finally`` and
    ``except BaseException`` blocks runs (a search is indexed as stopped, a half-written file removed, a
    process pool's workers ended), where the default action ended the process on the spot."""
    _terminated.append(True)
    raise KeyboardInterrupt


def install_sigterm_handler() -> None:
    """``on_sigterm`` for SIGTERM, from the main thread and only where SIGTERM has its default action (one the
    caller ignores stays ignored)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)

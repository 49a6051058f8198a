"""The ``edgenas`` command: a thin typer layer over the library.

Every command parses its arguments and calls one library function. Errors meant for users
(``EdgenasError``) become one red line on stderr and a non-zero exit code; no traceback is shown
(set ``EDGENAS_DEBUG=1`` to see one for unexpected errors).
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer with click
    from click.exceptions import ClickException  # type: ignore[no-redef]

    NoArgsIsHelpError = ()  # type: ignore[assignment,misc]

from edgenas.envflags import env_flag
from edgenas.errors import EdgenasError, InputError

app = typer.Typer(help="edgenas: hardware-aware NAS and deployment for edge devices.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)


def _register() -> None:
    from edgenas.cli import cmd_deploy, cmd_device, cmd_fleet, cmd_lut, cmd_misc, cmd_profile, cmd_search
    from edgenas.cli import cmd_supernet
    from edgenas.cli import cmd_fewshot  # after cmd_device: adds `device add`

    for mod in (cmd_profile, cmd_search, cmd_deploy, cmd_device, cmd_lut, cmd_fleet, cmd_supernet, cmd_misc):
        mod.register(app)
    from edgenas.cli import cmd_report; cmd_report.register(app)  # noqa: E702  (issue 16: report, serve)
    from edgenas.cli import cmd_runs
    cmd_runs.register(app)
    cmd_fewshot.register(app)


_register()


def _check_cwd() -> None:
    """The current folder must exist: every command reads the project from it (and torch, imported by some,
    aborts the process with a fatal error of its own in a deleted one)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise InputError("the current folder no longer exists (it was deleted)",
                         hint="cd to your project (or another folder) and run it again") from None


def _check_stdout() -> None:
    """Standard output must be open (``>&-`` closes it; Python then has no ``sys.stdout``): ``--json`` was an
    internal error after the work was done, and a table went nowhere with exit 0."""
    if sys.stdout is None:
        from edgenas.errors import OutputError

        raise OutputError("stdout is closed; the command has nowhere to print its results",
                          hint="run it with stdout open; to discard the output, redirect it: >/dev/null")


def main(argv: list[str] | None = None) -> None:
    from edgenas.cli._common import err
    from edgenas.quiet import install_sigterm_handler, install_thread_hook, silence_library_logs, terminated
    from edgenas.textsafe import esc

    silence_library_logs()
    install_thread_hook()
    install_sigterm_handler()
    for stream in (sys.stdout, sys.stderr):  # a terminal or pipe that is not UTF-8: '?' for what it cannot show
        if stream is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
            try:
                stream.reconfigure(errors="replace")  # "…" or "±" was an internal error after the work was done
            except (AttributeError, ValueError):
                pass

    try:
        from edgenas.limits import check_env

        check_env()
        _check_cwd()
        _check_stdout()
        # one name in usage lines and hints however it was started (``python -m edgenas`` gave "-m edgenas")
        code = app(args=argv, standalone_mode=False, prog_name="edgenas")
        if code == 130:  # typer's own answer to a KeyboardInterrupt (Ctrl-C, or SIGTERM): it printed nothing
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except EdgenasError as exc:
        from edgenas.outdirs import FD_HINT, fd_error, out_of_fds

        cause = out_of_fds(exc) if exc.exit_code != 130 and FD_HINT not in (exc.hint or "") else None
        if cause is not None:  # a read, a device's start, a database that failed for want of descriptors (exit 2,
            exc = fd_error(cause)  # 3 or a hint about permissions): the environment, and what to do about it
        err.print(f"[bold red]error:[/bold red] [red]{_line(exc)}[/red]")
        sys.exit(143 if exc.exit_code == 130 and terminated() else exc.exit_code)
    except typer.Abort:  # a prompt's Ctrl-C (click's confirm turns the KeyboardInterrupt into Abort), or SIGTERM
        if terminated():
            err.print(f"[bold red]error:[/bold red] [red]terminated (SIGTERM); {_interrupted_hint(argv)}[/red]")
            sys.exit(143)
        err.print("[red]aborted[/red]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        sub = ctx.command_path.split(" ", 1)[-1] if ctx and " " in ctx.command_path else ""
        err.print(f"[bold red]error:[/bold red] [red]{_line(exc.format_message())}[/red]"
                  f" (see: edgenas {esc(sub + ' ' if sub else '')}--help)")
        sys.exit(exc.exit_code)
    except OSError as exc:  # the disk or the file system, not a bug: one line (issue 10)
        from edgenas.outdirs import DISK_ERRNOS, escaped_error

        if exc.errno not in DISK_ERRNOS or env_flag("EDGENAS_DEBUG"):
            _internal(err, exc)
        e = escaped_error(exc)  # a name too long is an input's (exit 2), else the disk's
        err.print(f"[bold red]error:[/bold red] [red]{_line(e)}[/red]")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        what = "terminated (SIGTERM)" if terminated() else "interrupted"
        err.print(f"[bold red]error:[/bold red] [red]{what}; {_interrupted_hint(argv)}[/red]")
        sys.exit(143 if terminated() else 130)
    except Exception as exc:  # a bug: still one line, unless debugging
        _internal(err, exc)


def _interrupted_hint(argv: list[str] | None) -> str:
    """What to do after an interrupted command (other than a search, which names its own resume)."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")][:2]
    if words[:1] == ["profile"] or words == ["fleet", "refresh"]:
        return "the files written are complete; run it again to go on (the blocks already timed are kept)"
    if words == ["device", "add"]:
        return "the architectures measured so far are kept; run it again to measure the rest and fit the model"
    if words == ["supernet", "train"]:
        return ("the checkpoints written are complete; continue with the same command and --resume where --out holds "
                "a supernet.json, else run it again")
    return "the files written are complete; run the command again"


def _line(exc: BaseException | str) -> str:
    """An error as one escaped line: its message and its hint, each cut to ``textsafe.LINE_MAX`` characters
    (a message may echo a huge or multi-line value from a file or a device)."""
    from rich.markup import escape

    from edgenas.textsafe import one_line

    if isinstance(exc, EdgenasError):
        return escape(one_line(exc.message) + (f" ({one_line(exc.hint)})" if exc.hint else ""))
    return escape(one_line(exc))


def _internal(err, exc: BaseException) -> None:
    if env_flag("EDGENAS_DEBUG"):
        raise exc
    err.print(f"[bold red]internal error:[/bold red] [red]{type(exc).__name__}: {_line(exc)}[/red] "
              "(re-run with EDGENAS_DEBUG=1 for a traceback and report it)")
    sys.exit(70)

"""What every command shares: consoles, JSON output, progress bars, the one-red-line error rule.

Values interpolated into printed markup go through ``esc`` (``edgenas.textsafe``); the consoles also
strip control characters from every string they print."""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from edgenas.envflags import env_flag
from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.textsafe import SafeConsole, esc

#: results go to stdout; progress, notes and errors to stderr (so ``--json`` output stays clean)
out = SafeConsole(highlight=False, soft_wrap=True)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)


def project() -> Project:
    """The project of this command: ``$EDGENAS_PROJECT`` or the current folder. The variable may name a new
    folder (created as ``mkdir`` would, when the command writes), not one under a missing or non-folder
    parent: a typo such as ``/nonexistent/x`` must not become a new tree."""
    from edgenas.safenames import check_utf8_path

    named = os.environ.get("EDGENAS_PROJECT")
    if not named:
        check_utf8_path(Project.default().root, "the project folder (the current folder)")
        return Project.default()
    try:  # '~nobody/x' names no home; a link loop has no real path: each is the variable's fault
        # the folder a link leads to is the project: a link to a missing folder needs that folder's parent (a
        # link to an unmounted /mnt/usb/proj made a new tree in the mount point)
        path = Path(named).expanduser().absolute().resolve(strict=False)
        shown = named if str(path) == named else f"{named} ({path})"
        if path.exists() and not path.is_dir():
            raise InputError(f"EDGENAS_PROJECT names {shown}, which is not a folder", hint="fix or unset the variable")
        if not path.exists() and not path.parent.is_dir():
            raise InputError(f"EDGENAS_PROJECT names {shown}, whose parent folder does not exist",
                             hint="create the project folder, or fix or unset the variable")
        check_utf8_path(path, "the project folder (EDGENAS_PROJECT)")
        return Project(path)
    except (RuntimeError, OSError) as exc:
        raise InputError(f"EDGENAS_PROJECT names {named}, which is not a usable folder ({exc})",
                         hint="fix or unset the variable") from None


def emit_json(obj: Any) -> None:
    """``obj`` as standard JSON on stdout: NaN and infinities (no JSON values; jq rejects them) become null."""
    text = json.dumps(obj, indent=2, default=_json_default)
    if "NaN" in text or "Infinity" in text:  # (or only inside a string: then this changes nothing)
        text = json.dumps(_finite(json.loads(text)), indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _finite(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    import dataclasses
    from pathlib import Path

    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def note(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """Yields ``update(task_name, done, total)``; one rich bar per task name, on stderr."""
    if quiet or env_flag("EDGENAS_NO_PROGRESS"):
        yield lambda name, done, total: None
        return
    prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=err, transient=False)
    tasks: dict[str, Any] = {}

    def update(name: str, done: int, total: int) -> None:
        if not tasks:  # shown from the first report on: a command that fails before it prints no empty bar line
            prog.start()
        if name not in tasks:
            tasks[name] = prog.add_task(esc(name), total=total)
        prog.update(tasks[name], completed=done, total=total)

    try:
        yield update
    except BaseException:  # a failure (or Ctrl-C) after the bar started: on a terminal the bar is erased, so
        prog.live.transient = err.is_terminal  # the error is the only line (a log file keeps the bar's last state)
        raise
    finally:
        if tasks:
            prog.stop()


def results_table(*columns: Any) -> Any:
    """A rich table whose values wrap instead of being cut (``print_table`` prints it): at 20 columns a
    ``runs list`` showed only ``…``."""
    from rich.table import Table

    table = Table(*columns)
    for column in table.columns:
        if not column.no_wrap:
            column.overflow = "fold"
    return table


def print_table(table: Any) -> None:
    """``table`` on stdout; piped to a file or a CI log, as wide as its rows are (it was cut to 80 columns:
    ``nb2…``, ``evo…``, ``ras…`` for the space, the strategy and the budgets)."""
    from rich.measure import Measurement

    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update(max_width=10_000), table).maximum  # unbounded
    before = out.width  # print(width=) is capped at the console's width: widen the console for the table
    out.width = max(before, natural)
    try:
        out.print(table)
    finally:
        out.width = before

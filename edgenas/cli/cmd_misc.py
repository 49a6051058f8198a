"""``edgenas list``: what is registered (spaces, strategies, evaluators, runtimes)."""

from __future__ import annotations

import typer

from edgenas.cli._common import emit_json, out
from edgenas.textsafe import esc


def registered() -> dict[str, dict[str, str]]:
    from edgenas.devices.runtimes import RUNTIMES
    from edgenas.evaluate.base import EVALUATORS
    from edgenas.search import STRATEGIES
    from edgenas.spaces import SPACES

    return {"spaces": SPACES.describe(), "evaluators": EVALUATORS.describe(),
            "strategies": STRATEGIES.describe(), "runtimes": RUNTIMES.describe()}


def strategy_options() -> dict[str, dict[str, object]]:
    """Every strategy's declared options and their defaults (``--strategy-opt KEY=VALUE``); a default that the
    search replaces is None (``n_objectives``: the search's count, not the declared 1), and an option that does
    nothing in the strategy is left out (CMA-ES's ``n_objectives``: it optimises one scalar)."""
    from edgenas.search import STRATEGIES

    return {n: {k: None if o.listed else (list(o.default) if isinstance(o.default, tuple) else o.default)
                for k, o in STRATEGIES.get(n).options.items() if o.listed is not None} for n in STRATEGIES.names()}


def listed_defaults() -> dict[str, dict[str, str]]:
    """What the text of ``edgenas list`` shows for the defaults a search replaces, per strategy."""
    from edgenas.search import STRATEGIES

    return {n: {k: o.listed for k, o in STRATEGIES.get(n).options.items() if o.listed} for n in STRATEGIES.names()}


def per_space_defaults() -> dict[str, dict[str, dict[str, object]]]:
    """Options whose default differs for a family of spaces (None: not an option there), per strategy."""
    from edgenas.search import STRATEGIES

    return {n: {k: dict(o.per_space) for k, o in STRATEGIES.get(n).options.items() if o.per_space}
            for n in STRATEGIES.names() if any(o.per_space for o in STRATEGIES.get(n).options.values())}


def _shown(key: str, default: object, per_space: dict[str, object], listed: str = "") -> str:
    notes = [f"not for {fam}" if v is None else f"{fam}: {v}" for fam, v in per_space.items()]
    return f"{key}={f'({listed})' if listed else default}" + (f" ({'; '.join(notes)})" if notes else "")


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_(json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """List spaces, strategies, evaluators and runtimes."""
        reg = registered()
        opts, per_space, listed = strategy_options(), per_space_defaults(), listed_defaults()
        if json_out:
            emit_json({**reg, "strategy_options": opts, "strategy_options_per_space": per_space})
            return
        for kind, items in reg.items():
            out.print(f"[bold]{kind}[/bold]")
            for name, help_ in items.items():
                out.print(esc(f"  {name:<16} {help_}"))
                if kind == "strategies" and opts.get(name):
                    shown = [_shown(k, v, per_space.get(name, {}).get(k, {}), listed[name].get(k, ""))
                             for k, v in opts[name].items()]
                    out.print(esc("  " + " " * 17 + "options: " + ", ".join(shown)))

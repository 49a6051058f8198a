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
    """Every strategy's declared options and their defaults (``--strategy-opt KEY=VALUE``)."""
    from edgenas.search import STRATEGIES

    return {n: {k: (list(o.default) if isinstance(o.default, tuple) else o.default)
                for k, o in STRATEGIES.get(n).options.items()} for n in STRATEGIES.names()}


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_(json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """List spaces, strategies, evaluators and runtimes."""
        reg = registered()
        opts = strategy_options()
        if json_out:
            emit_json({**reg, "strategy_options": opts})
            return
        for kind, items in reg.items():
            out.print(f"[bold]{kind}[/bold]")
            for name, help_ in items.items():
                out.print(esc(f"  {name:<16} {help_}"))
                if kind == "strategies" and opts.get(name):
                    out.print(esc("  " + " " * 17 + "options: " + ", ".join(f"{k}={v}" for k, v in opts[name].items())))

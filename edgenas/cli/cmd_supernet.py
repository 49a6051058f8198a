"""``edgenas supernet ...``: train a weight-sharing supernet and evaluate sub-networks with it."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:  # filled in below once the supernet library lands
    return None

"""What a new search request may not give twice; ``launch_search`` refuses it before anything is written.

A setting given twice was taken once and the other dropped without a word: ``--minimise params`` twice and
the same ``--report`` column twice were recorded twice; ``--population 6`` lost to ``--strategy-opt
population=4`` (the strategy's own option won, ``run.strategy_options``), and ``--llm-share 0.5`` won over
``--strategy-opt llm_share=0.9``. A ladder's rungs: ``ladder.check_new_ladder``. The same ``KEY=VALUE``
twice under one flag is the CLI's to refuse (``cmd_search``): a request's options are a mapping already.

Only a new request is checked: a recorded one (``--resume``, ``--rerun``) runs as it was recorded, so a run
folder of an earlier edgenas that recorded a setting twice still resumes, and re-runs, as it ran.
"""

from __future__ import annotations

from typing import Any

from edgenas.once import both_set, check_once

#: the request's fields that a strategy also takes as an option (``--strategy-opt``), and their flags
TWINS = {"population": "--population", "llm_share": "--llm-share"}


def check_new_request(req: Any) -> None:
    """Refuse a ``SearchRequest`` that gives a setting twice (``edgenas.once``)."""
    from edgenas.search.base import STRATEGIES
    from edgenas.search.ladder import check_new_ladder
    from edgenas.search.multifidelity import MODES

    # a field that is not a sequence (report="cifar100_test" from Python) is left to the checks that say so
    for flag, given in (("--minimise", req.minimise), ("--report", req.report), ("--warm-start", req.warm_start)):
        if isinstance(given, (list, tuple)):
            check_once(flag, ((v, None) for v in given))
    strategy = STRATEGIES.get(req.strategy)
    if strategy.name in MODES and isinstance(req.ladder, (list, tuple)):  # else it is refused whole (sh, hyperband)
        check_new_ladder(req.ladder)
    spec = strategy.options
    for name, flag in TWINS.items():
        value = getattr(req, name)
        # an option the strategy does not take is refused as such (--population of random, unknown options)
        if value is not None and name in req.strategy_options and name in spec:
            raise both_set(flag, value, "--strategy-opt", name, req.strategy_options[name],
                           f"{req.strategy}'s {name}")

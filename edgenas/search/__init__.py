"""Search: strategies (ask/tell), the problem (objectives, constraints), Pareto utilities, the run loop."""

from edgenas.search.base import STRATEGIES, Result, Strategy, Trial, make_strategy, strategy_names
from edgenas.search.problem import DeviceTarget, LatencyModel, Problem
from edgenas.search.results import SearchResult
from edgenas.search.run import SearchConfig, run_search

__all__ = ["STRATEGIES", "DeviceTarget", "LatencyModel", "Problem", "Result", "SearchConfig",
           "SearchResult", "Strategy", "Trial", "make_strategy", "run_search", "strategy_names"]

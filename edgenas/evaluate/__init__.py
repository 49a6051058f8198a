"""Accuracy evaluators: zero-cost proxies, a trained supernet, short training, tabular benchmarks."""

from edgenas.evaluate.base import EVALUATORS, CachedEvaluator, Evaluator, make_evaluator

__all__ = ["EVALUATORS", "CachedEvaluator", "Evaluator", "make_evaluator"]

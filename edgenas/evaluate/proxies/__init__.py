"""Zero-cost proxies: score an untrained network from one mini-batch (higher is better).

Importing this package registers every proxy in ``PROXIES`` and, as an evaluator, in
``edgenas.evaluate.base.EVALUATORS`` (names: naswot, synflow, snip, grad_norm, jacob_cov, params,
flops, compression, trainability, ct_prior).
"""

from edgenas.evaluate.proxies import zero_cost as _zero_cost  # noqa: F401  (registers proxies)
from edgenas.evaluate.proxies.base import PROXIES, Proxy, finite_or_neg_inf, make_proxy
from edgenas.evaluate.proxies.ct import (
    CT_WEIGHTS, Compression, Trainability, ct_prior_combine, rank_normalise,
)
from edgenas.evaluate.proxies.evaluator import (
    CTPriorEvaluator, ProxyEvaluator, make_ct_prior_evaluator, register_all,
)
from edgenas.evaluate.proxies.zero_cost import count_macs

register_all()

__all__ = [
    "CT_WEIGHTS", "CTPriorEvaluator", "Compression", "PROXIES", "Proxy", "ProxyEvaluator",
    "Trainability", "count_macs", "ct_prior_combine", "finite_or_neg_inf", "make_ct_prior_evaluator",
    "make_proxy", "rank_normalise",
]

"""Weight-sharing supernet for the ``mbv3`` spaces (Once-for-All / BigNAS style).

Train with ``train_supernet(TrainConfig(...))``, load with ``load_supernet(path)``, score
sub-networks with ``evaluate_subnets(checkpoint, archs)`` and export one with ``extract_subnet``.
"""

from edgenas.supernet.bn import recalibrate_bn
from edgenas.supernet.checkpoint import load_checkpoint, load_supernet
from edgenas.supernet.evaluate import SubnetScorer, evaluate_subnets
from edgenas.supernet.extract import extract_subnet
from edgenas.supernet.model import MBV3Supernet
from edgenas.supernet.ofa import load_ofa_weights
from edgenas.supernet.train import TrainConfig, train_supernet

__all__ = ["MBV3Supernet", "SubnetScorer", "TrainConfig", "evaluate_subnets", "extract_subnet",
           "load_checkpoint", "load_ofa_weights", "load_supernet", "recalibrate_bn", "train_supernet"]

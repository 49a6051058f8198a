"""The short-training evaluator: learns digits, and a score depends only on (arch, seed, options)."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate import make_evaluator
from edgenas.spaces import get_space


@pytest.mark.slow
def test_short_training_learns_and_is_batch_independent():
    space = get_space("mbv3-tiny")
    a, b = (space.sample(np.random.default_rng(i)) for i in range(2))
    ev = make_evaluator("train", space, seed=0, epochs=4, limit=500)
    both = ev.evaluate([a, b])
    assert np.all(both > 20.0)  # chance on 10 digits is 10%
    again = make_evaluator("train", space, seed=0, epochs=4, limit=500)
    assert again.evaluate([b]).tolist() == [both[1]]  # alone, in a new evaluator: the same score


def test_bad_options_are_clear_errors(tmp_path):
    space = get_space("mbv3-tiny")
    with pytest.raises(InputError, match="unknown option"):
        make_evaluator("train", space, epoch=2)
    with pytest.raises(InputError, match="bad option epochs"):
        make_evaluator("train", space, epochs=0)
    with pytest.raises(InputError, match="does not exist"):
        make_evaluator("train", space, data=str(tmp_path / "missing.npz"))

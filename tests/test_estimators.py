"""The meta-loss arithmetic (the meta-gradients are checked in test_optimizers.py)."""

import numpy as np
import pytest
from keras import ops

from l2o.config import DEFAULTS
from l2o.estimators.unroll import exploded, meta_loss

LOSSES = np.array([4.0, 2.0, 1.0])


def args(**changes):
    return {**DEFAULTS["loss_args"], "epsilon": 0.0, **changes}


@pytest.mark.parametrize("weights, scale, log, expected", [
    ("sum", False, False, 7.0),
    ("mean", False, False, 7.0 / 3),
    ("final", False, False, 1.0),
    ("mean", True, False, (1.0 + 0.5 + 0.25) / 3),
    ("mean", True, True, (np.log(1.0) + np.log(0.5) + np.log(0.25)) / 3),
    ("sum", False, True, np.log(4.0) + np.log(2.0) + np.log(1.0)),
])
def test_meta_loss_by_hand(weights, scale, log, expected):
    value = meta_loss(ops.convert_to_tensor(LOSSES), 4.0,
                      args(scale_objective=scale, use_log_objective=log), weights)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_numerator_epsilon():
    value = meta_loss(ops.convert_to_tensor(np.array([0.0])), 1.0,
                      args(use_log_objective=False, epsilon=0.5, use_numerator_epsilon=True),
                      "sum")
    assert float(value) == pytest.approx(0.5 / 1.5)


def test_exploded():
    losses = ops.convert_to_tensor(np.array([1.0, 2.5]))
    assert not bool(exploded(losses, 1.0, args()))
    assert bool(exploded(losses, 1.0, args(obj_train_max_multiplier=2.0)))
    assert bool(exploded(ops.convert_to_tensor(np.array([1.0, np.nan])), 1.0, args()))

"""Extending l2o from outside the package: a learned optimiser and a problem are each one class
and its registration, and a config then meta-trains the one on the other."""

import numpy as np
import pytest
from conftest import tiny_config
from keras import ops

import l2o
from l2o.optimizers import LearnedOptimizer, UpdateRule
from l2o.problems import Problem
from l2o.registry import OPTIMIZERS, PROBLEMS
from l2o.validation import ConfigError, check_range


class LearnedRateRule(UpdateRule):
    """SGD at a meta-learned rate: ``update = -exp(log_rate) g``."""

    def __init__(self, initial_rate=1e-3):
        self.initial_rate = float(initial_rate)

    @classmethod
    def validate_config(cls, network):
        check_range("network/initial_rate", network["initial_rate"], 0.0)

    def init_meta_weights(self, seed):
        return {"log_rate": np.array(np.log(self.initial_rate), np.float32)}

    def init_state(self, params, seed):
        return {}

    def update(self, meta_weights, grads, params, state):
        return [-ops.exp(meta_weights["log_rate"]) * g for g in grads], state


class LearnedRateSGD(LearnedOptimizer):
    rule_class = LearnedRateRule


class DiagonalBowl(Problem):
    """f(x) = 0.5 sum_i c_i x_i^2 with curvatures c spread over [0.1, 1]; x_0 ~ N(0, 1)."""

    def __init__(self, dim=8):
        self.dim = int(dim)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        check_range(f"{prefix}dim", kwargs["dim"], 0)

    def init(self, seed):
        return [np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)]

    def loss(self, params, batch):
        (curvatures,) = batch
        return 0.5 * ops.sum(curvatures * ops.square(params[0]))

    def batches(self, seed, start, count):
        curvatures = np.linspace(0.1, 1.0, self.dim, dtype=np.float32)
        return (np.broadcast_to(curvatures, (count, self.dim)),)


@pytest.fixture(autouse=True)
def registered():
    """What a user's module does on import (``@OPTIMIZERS.register("LearnedRateSGD")`` on the
    class), undone after each test so that the package's own registries stay as shipped."""
    OPTIMIZERS.register("LearnedRateSGD")(LearnedRateSGD)
    PROBLEMS.register("diagonal_bowl")(DiagonalBowl)
    yield
    del OPTIMIZERS["LearnedRateSGD"], PROBLEMS["diagonal_bowl"]


def test_a_learned_optimiser_and_a_problem_from_outside_the_package_meta_train(tmp_path):
    config = tiny_config(tmp_path / "run", constructor="LearnedRateSGD",
                         network={"initial_rate": 1e-3},
                         problems=[{"target": "diagonal_bowl", "kwargs": {"dim": 8}}],
                         training={"depth": 2, "meta_objective": "train_sum_loss"},
                         optimizer={"class_name": "Adam", "config": {"learning_rate": 0.1}})
    l2o.train(config)
    optimizer = l2o.load_optimizer(str(tmp_path / "run"), checkpoint="last")
    assert isinstance(optimizer, LearnedRateSGD)
    # On a bowl whose curvatures are at most 1, any rate below 1 is too small: the meta-gradient
    # of the summed loss can only push the learned rate up from 1e-3.
    assert float(optimizer.meta_weights["log_rate"]) > np.log(1e-3) + 0.5


def test_their_own_checks_run_on_the_config_path(tmp_path):
    bad_rate = tiny_config(tmp_path / "a", constructor="LearnedRateSGD",
                           network={"initial_rate": -1.0},
                           problems=[{"target": "diagonal_bowl", "kwargs": {}}])
    with pytest.raises(ConfigError, match="network/initial_rate"):
        l2o.train(bad_rate)
    bad_dim = tiny_config(tmp_path / "b", constructor="LearnedRateSGD",
                          problems=[{"target": "diagonal_bowl", "kwargs": {"dim": 0}}])
    with pytest.raises(ConfigError, match="problems/0/kwargs/dim"):
        l2o.train(bad_dim)

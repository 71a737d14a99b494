"""Extending l2o from outside the package: a learned optimiser, a problem and a meta-gradient
estimator are each a class (or two) and their registration, and a config then meta-trains
with them."""

import importlib.util
import inspect
import textwrap

import numpy as np
import pytest
from conftest import tiny_config
from keras import ops

import l2o
from l2o import runs
from l2o.estimators import EstimatorSpec, GradientEstimate, GradientEstimator
from l2o.optimizers import UpdateRule
from l2o.problems import Problem
from l2o.registry import ESTIMATORS, OPTIMIZERS, PROBLEMS
from l2o.validation import ConfigError, check_range


def docstring_example(cls):
    """The code block that ends ``cls``'s docstring."""
    return textwrap.dedent(inspect.getdoc(cls).split("::\n", 1)[1])


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    """UpdateRule's docstring example as a user's own module, imported from its file (so that
    tf.function reads its source as it reads any module's): a learned optimiser defined
    outside the package, registered on import."""
    path = tmp_path_factory.mktemp("user") / "learned_rate.py"
    path.write_text("import numpy as np\nfrom keras import ops\n\n"
                    "from l2o.optimizers import LearnedOptimizer, UpdateRule\n"
                    "from l2o.registry import OPTIMIZERS\n"
                    "from l2o.validation import check_range\n\n\n"
                    + docstring_example(UpdateRule))
    spec = importlib.util.spec_from_file_location("learned_rate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    del OPTIMIZERS["LearnedRateSGD"]


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


class CentralDifferences(GradientEstimator):
    """The meta-gradient by central differences of the meta-loss of a fresh ``length``-step
    unroll from the worker's seed, one meta-weight coordinate at a time; the worker state is
    the seed of the next unroll."""

    def __init__(self, tbptt, step):
        self.tbptt, self.step = tbptt, step

    def meta_loss(self, length, seed):
        return self.tbptt.validation_metrics(length, seed)["validation_meta_loss"]

    def init_worker_state(self, seed):
        return seed

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None):
        grads = []
        for variable in self.tbptt.meta_variables.values():
            centre, grad = np.array(variable.numpy()), np.zeros(variable.shape, np.float32)
            for index in np.ndindex(centre.shape):
                values = []
                for sign in (1.0, -1.0):
                    shifted = centre.copy()
                    shifted[index] += sign * self.step
                    variable.assign(shifted)
                    values.append(self.meta_loss(length, worker_state))
                grad[index] = (values[0] - values[1]) / (2 * self.step)
            variable.assign(centre)
            grads.append(grad)
        return GradientEstimate(loss=self.meta_loss(length, worker_state), grads=grads,
                                usable=True, steps=length, restart=False), worker_state + 1

    def validation_metrics(self, unroll, seed):
        return self.tbptt.validation_metrics(unroll, seed)

    def worker_arrays(self, worker_state):
        return {}, {"seed": worker_state}

    def load_worker_state(self, arrays, info):
        return info["seed"]


class CentralDifferencesSpec(EstimatorSpec):
    """``estimator_constructor: central_differences``, with its one option ``step``."""

    def __init__(self, step=1e-2):
        self.step = step

    @classmethod
    def validate_config(cls, estimator, config):
        check_range("estimator/step", estimator["step"], 0.0)

    def build(self, tbptt):
        return CentralDifferences(tbptt, self.step)


@pytest.fixture(autouse=True)
def registered(user_module):
    """What a user's module does on import (``@PROBLEMS.register("diagonal_bowl")`` on the
    class), undone after the tests so that the package's own registries stay as shipped."""
    PROBLEMS.register("diagonal_bowl")(DiagonalBowl)
    ESTIMATORS.register("central_differences")(CentralDifferencesSpec)
    yield
    del PROBLEMS["diagonal_bowl"], ESTIMATORS["central_differences"]


def test_a_learned_optimiser_and_a_problem_from_outside_the_package_meta_train(tmp_path,
                                                                              user_module):
    config = tiny_config(tmp_path / "run", constructor="LearnedRateSGD",
                         network={"initial_rate": 1e-3},
                         problems=[{"target": "diagonal_bowl", "kwargs": {"dim": 8}}],
                         training={"depth": 2, "meta_objective": "train_sum_loss"},
                         optimizer={"class_name": "Adam", "config": {"learning_rate": 0.1}})
    l2o.train(config)
    optimizer = l2o.load_optimizer(str(tmp_path / "run"), checkpoint="last")
    assert isinstance(optimizer, user_module.LearnedRateSGD)
    # On a bowl whose curvatures are at most 1, any rate below 1 is too small: the meta-gradient
    # of the summed loss can only push the learned rate up from 1e-3.
    assert float(optimizer.meta_weights["log_rate"]) > np.log(1e-3) + 0.5


def test_an_estimator_from_outside_the_package_meta_trains_with_its_own_options(tmp_path):
    config = tiny_config(tmp_path / "run", constructor="LearnedRateSGD",
                         network={"initial_rate": 1e-3},
                         problems=[{"target": "diagonal_bowl", "kwargs": {"dim": 8}}],
                         training={"depth": 2},
                         estimator_constructor="central_differences",
                         estimator={"step": 0.05},
                         optimizer={"class_name": "Adam", "config": {"learning_rate": 0.1}})
    l2o.train(config)
    assert runs.read_config(tmp_path / "run")["estimator"] == {"step": 0.05}
    optimizer = l2o.load_optimizer(str(tmp_path / "run"), checkpoint="last")
    # As with backpropagation above: the differences can only push the rate up from 1e-3.
    assert float(optimizer.meta_weights["log_rate"]) > np.log(1e-3) + 0.5
    with pytest.raises(ConfigError, match="estimator/step: must be above 0.0"):
        l2o.train({**config, "estimator": {"step": -1.0}, "directory": str(tmp_path / "bad")})
    with pytest.raises(ConfigError, match="estimator/sigma: unknown key"):
        l2o.train({**config, "estimator": {"sigma": 0.1}, "directory": str(tmp_path / "bad")})


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

"""The meta-loss arithmetic and the TBPTT meta-gradient against finite differences."""

import keras
import numpy as np
import pytest
from keras import ops

from l2o.config import DEFAULTS
from l2o.estimators import TBPTT
from l2o.estimators.unroll import exploded, meta_loss
from l2o.optimizers import DMRule
from l2o.problems import Quadratic

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


def test_tbptt_gradient_matches_finite_differences():
    """Acceptance: 3-step unroll on the quadratic, float64, relative error < 1e-3."""
    rule, problem = DMRule(layers=[6, 5]), Quadratic(dim=10)
    variables = {k: keras.Variable(v.astype(np.float64), dtype="float64", name=k.replace("/", "_"))
                 for k, v in rule.init_meta_weights(seed=1).items()}
    estimator = TBPTT(rule, problem, variables, DEFAULTS["loss_args"], "mean")
    params = [ops.convert_to_tensor(p.astype(np.float64)) for p in problem.init(5)]
    batches = tuple(b.astype(np.float64) for b in problem.batches(5, 0, 3))
    initial = estimator.initial_loss(params, tuple(b[0] for b in batches))

    value, grads, *_ = estimator.estimate(params, rule.init_state(params), batches, initial)
    names = list(variables)
    analytic = {n: ops.convert_to_numpy(g) for n, g in zip(names, grads)}
    base = {n: ops.convert_to_numpy(v) for n, v in variables.items()}

    def loss_at(point):
        for n in names:
            variables[n].assign(point[n])
        return float(estimator.evaluate(params, rule.init_state(params), batches, initial)[0])

    generator, h = np.random.default_rng(0), 1e-6
    directions = [{n: generator.standard_normal(v.shape) for n, v in base.items()}]
    for name in ("output/kernel", "lstm_0/kernel"):  # plus single coordinates
        directions.append({n: np.zeros_like(v) for n, v in base.items()})
        directions[-1][name].flat[0] = 1.0
    for direction in directions:
        finite = (loss_at({n: base[n] + h * direction[n] for n in names})
                  - loss_at({n: base[n] - h * direction[n] for n in names})) / (2 * h)
        exact = sum(float(np.sum(analytic[n] * direction[n])) for n in names)
        assert abs(exact) > 1e-6
        assert abs(exact - finite) / abs(finite) < 1e-3, (exact, finite)
    assert float(value) == pytest.approx(loss_at(base), rel=1e-12)

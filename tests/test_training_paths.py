"""Numerical paths of real (tiny) meta-training runs, checked against meta-gradients by hand.

The inner problem is a fixed diagonal quadratic f(theta) = 0.5 sum_i h_i theta_i^2 from
theta_0 = 1 whatever the trajectory's seed, and the learned optimiser plain SGD with one
meta-weight a, the log learning rate (``ScheduledSGD``, constant schedule). So every
trajectory, fresh or restarted, is the same function of a, and with SGD as meta-optimiser
the meta-weight after each meta-update is a - lr * (meta-gradient), which a float64
GradientTape loop computes here independently of the estimators.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

import l2o
from l2o.config import resolve
from l2o.problems import PROBLEMS
from l2o.problems.base import Problem
from l2o.strategies import STRATEGIES
from l2o.trainer import MetaTrainer

META_LR = 0.1
EPSILON = 1e-10  # loss_args/epsilon


class FixedQuadratic(Problem):
    """0.5 sum_i h_i theta_i^2 from theta_0 = 1, the same instance for every seed."""

    def __init__(self, curvature=(1.0, 3.0)):
        self.curvature = np.asarray(curvature, np.float32)

    def init(self, seed):
        return [np.ones_like(self.curvature)]

    def loss(self, params, batch):
        return 0.5 * tf.reduce_sum(tf.cast(self.curvature, params[0].dtype) * params[0] ** 2)

    def batches(self, seed, start, count):
        return (np.zeros((count, 1), np.float32),)


@pytest.fixture(autouse=True)
def fixed_quadratic(monkeypatch):
    monkeypatch.setitem(PROBLEMS, "fixed_quadratic", FixedQuadratic)


def run(directory, learning_rate, curvature=(1.0, 3.0), unroll=3, depth=1, loss_args=None,
        **training):
    """One period of ``depth`` truncations of ``unroll`` steps; returns (a, summary line)."""
    config = tiny_config(
        directory, constructor="ScheduledSGD",
        network={"schedule": "constant", "learning_rate": learning_rate},
        problems=[{"target": "fixed_quadratic", "kwargs": {"curvature": list(curvature)}}],
        optimizer={"class_name": "SGD", "config": {"learning_rate": META_LR}},
        training={"depth": depth, **training}, loss_args=loss_args or {},
        strategy={"num_periods": 1, "epochs_per_period": 1, "unroll_distribution": unroll,
                  "validation_unroll": 2})
    resolved = resolve(config)
    STRATEGIES[resolved["strategy_constructor"]](**resolved["strategy"]).run(
        MetaTrainer(resolved), resolved["directory"])
    meta_weights, _ = l2o.runs.load_meta_weights(str(directory), "last")
    summary = json.loads((directory / "summary.jsonl").read_text().splitlines()[-1])
    return float(meta_weights["log_learning_rate"][0]), summary


def truncation(a, theta, curvature, unroll, second_order=True):
    """(meta-loss, d meta-loss / da, theta after) of one truncation from ``theta``, in float64:
    mean_t log(f_t / (f_0 + eps)), f_t = f(theta_{t-1}), theta_t = theta_{t-1} - e^a grad f."""
    h = tf.constant(curvature, tf.float64)
    a = tf.Variable(a, dtype=tf.float64)
    initial_loss = 0.5 * float(np.sum(curvature))  # f(theta_0 = 1)
    with tf.GradientTape() as tape:
        theta, terms = tf.constant(theta, tf.float64), []
        for _ in range(unroll):
            terms.append(tf.math.log(0.5 * tf.reduce_sum(h * theta ** 2)
                                     / (initial_loss + EPSILON)))
            gradient = h * theta
            if not second_order:
                gradient = tf.stop_gradient(gradient)
            theta = theta - tf.exp(a) * gradient
        value = tf.reduce_mean(tf.stack(terms))
    return float(value), float(tape.gradient(value, a)), theta.numpy()


@pytest.mark.parametrize("second_order", [True, False])
def test_second_order_switch_gives_its_meta_gradient_by_hand(tmp_path, second_order):
    """second_order=false is the meta-gradient with the inner gradients held constant."""
    a = np.log(0.2)
    expected = {order: a - META_LR * truncation(a, [1.0, 1.0], (1.0, 3.0), 3, order)[1]
                for order in (True, False)}
    assert abs(expected[True] - expected[False]) > 0.01  # the Hessian term matters here
    got, _ = run(tmp_path, 0.2, second_order=second_order)
    assert got == pytest.approx(expected[second_order], abs=1e-6)


def test_exploded_trajectories_restart_and_the_run_goes_on(tmp_path):
    """lr 1 on curvature 3 diverges (theta_2 doubles each step): with
    obj_train_max_multiplier 2 the first truncation's losses pass 2 f_0, so the second
    truncation starts again from theta_0; without the limit it continues from where the
    first ended."""
    a0, start = 0.0, [1.0, 1.0]

    def two_updates(restart):
        _, gradient, theta = truncation(a0, start, (1.0, 3.0), 3)
        a1 = a0 - META_LR * gradient
        _, gradient, _ = truncation(a1, start if restart else theta, (1.0, 3.0), 3)
        return a1 - META_LR * gradient

    restarted, continued = two_updates(restart=True), two_updates(restart=False)
    assert abs(restarted - continued) > 1e-3  # 1000 times the tolerance below
    got, summary = run(tmp_path / "limited", 1.0, depth=2,
                       loss_args={"obj_train_max_multiplier": 2.0})
    assert got == pytest.approx(restarted, abs=1e-6)
    assert all(np.isfinite(summary[key]) for key in ("train_meta_loss", "validation_meta_loss"))
    unlimited, _ = run(tmp_path / "unlimited", 1.0, depth=2)
    assert unlimited == pytest.approx(continued, abs=1e-6)


def test_a_non_finite_meta_gradient_is_skipped(tmp_path):
    """lr 1e10 on f = 0.5 theta^2: theta_t = (1 - 1e10)^t. The first truncation's losses
    (0.5, 5e19) are finite; the second reaches f = 5e39, infinite in float32, so its
    meta-gradient is not applied: a is where the first update left it, and the period's
    training meta-loss is the first truncation's alone."""
    a0 = np.log(1e10)
    value, gradient, _ = truncation(a0, [1.0], (1.0,), 2)
    got, summary = run(tmp_path, 1e10, curvature=(1.0,), unroll=2, depth=2)
    assert np.isfinite(got)
    assert got == pytest.approx(a0 - META_LR * gradient, abs=1e-5)
    assert abs(gradient) > 0.5  # the first update moved a
    assert summary["train_meta_loss"] == pytest.approx(value, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["tbptt", "pes"])
def test_jit_compile_gives_the_same_numbers(tmp_path, estimator):
    """training/jit_compile=true (XLA) against false on the digits MLP with DM."""
    training = {"depth": 2, "estimator": estimator, "jit_compile": False}
    if estimator == "pes":
        training.update(n_particles=4, sigma=0.05)
    results = {}
    for jit in (False, True):
        directory = tmp_path / str(jit)
        config = tiny_config(directory, training=dict(training, jit_compile=jit))
        resolved = resolve(config, ["strategy/num_periods=1"])
        STRATEGIES[resolved["strategy_constructor"]](**resolved["strategy"]).run(
            MetaTrainer(resolved), resolved["directory"])
        weights, _ = l2o.runs.load_meta_weights(str(directory), "last")
        summary = json.loads((directory / "summary.jsonl").read_text())
        results[jit] = weights, summary
    initial = l2o.load_optimizer(str(tmp_path / "False"), "last").rule.init_meta_weights(0)
    moved = max(float(np.max(np.abs(results[False][0][name] - initial[name])))
                for name in initial)
    assert moved > 1e-4
    for name, value in results[False][0].items():
        np.testing.assert_allclose(results[True][0][name], value, rtol=1e-4, atol=1e-6)
    for key in ("train_meta_loss", "validation_meta_loss", "validation_final_loss"):
        assert results[True][1][key] == pytest.approx(results[False][1][key], rel=1e-4)

"""TBPTT, RTRL and UORO on general recurrent systems (``l2o.estimators.online``)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from test_es import assert_unbiased_with_power

from l2o.estimators.online import RTRL, UORO, OnlineTBPTT
from l2o.systems import influence, toy2d

# The toy 2-D regression restarting after 20 steps (its schedule still spans 100): nonlinear and
# time-dependent, long enough for truncations of 5 steps to be biased, short enough to be fast.
TOY = dataclasses.replace(toy2d.SYSTEM, horizon=20)
THETA = np.array([-1.0, -0.5])


def horizon_sum(estimator, length, generator=None):
    """``(gradient, loss)`` estimates summed over the truncations of one horizon of TOY."""
    estimates = [estimator.estimate(THETA, generator, length)
                 for _ in range(TOY.horizon // length)]
    return sum(g for g, _ in estimates), sum(loss for _, loss in estimates)


@pytest.mark.slow
def test_rtrl_online_across_truncations_equals_backprop_through_the_whole_horizon():
    exact, exact_loss = OnlineTBPTT(TOY).estimate(THETA, None, TOY.horizon)
    assert exact_loss == pytest.approx(float(TOY.meta_objective(tf.constant(THETA[None]))[0]),
                                       rel=1e-6)
    for length in (1, 5, 20):
        gradient, loss = horizon_sum(RTRL(TOY), length)
        np.testing.assert_allclose(gradient, exact, rtol=1e-10)
        assert loss == pytest.approx(exact_loss, rel=1e-12)
    # Truncation changes the answer here, so the agreement above says something.
    truncated, _ = horizon_sum(OnlineTBPTT(TOY), 5)
    assert np.all(np.abs(truncated - exact) > 0.5 * np.abs(exact)), (truncated, exact)


@pytest.mark.slow
def test_rtrl_equals_backprop_on_a_truncation_scored_by_its_last_state():
    for length in (1, 7):
        gradient, loss = RTRL(influence.SYSTEM).estimate([0.3], None, length)
        expected, expected_loss = OnlineTBPTT(influence.SYSTEM).estimate([0.3], None, length)
        np.testing.assert_allclose(gradient, expected, rtol=1e-10)
        assert loss == pytest.approx(expected_loss, rel=1e-12)


@pytest.mark.slow
def test_uoro_is_unbiased_for_the_whole_horizon_gradient():
    """Its estimates summed over a horizon, averaged over 600 horizons (one estimator restarts
    at each), are within 3 standard errors of the exact gradient, in each component."""
    exact, _ = OnlineTBPTT(TOY).estimate(THETA, None, TOY.horizon)
    uoro, generator = UORO(TOY), np.random.default_rng(0)
    samples = np.array([horizon_sum(uoro, 5, generator)[0] for _ in range(600)])
    for component in range(THETA.size):
        assert_unbiased_with_power(samples[:, component], exact[component])


# RTRL and UORO for a linear system written out in float64 numpy, independently of online.py:
# J <- A J + b, and UORO's recursion with A s_tilde and nu . b written out.
A, B = (matrix.astype(np.float64) for matrix in influence.transition())


def old_rtrl(thetas, steps):
    state, influence_, estimates = np.ones(influence.DIMENSION), np.zeros(influence.DIMENSION), []
    for theta in thetas:
        for _ in range(steps):
            influence_ = A @ influence_ + B
            state = A @ state + theta * B
        estimates.append((state[0] - 1.0) * influence_[0])
    return estimates


def old_uoro(thetas, generator, tiny=1e-12):
    """One step per truncation: the old UORO drew its signs a step at a time, the general one
    a truncation at a time (the same stream when a truncation is one step)."""
    state, state_tilde, theta_tilde = np.ones(influence.DIMENSION), np.zeros(influence.DIMENSION), 0.0
    estimates = []
    for theta in thetas:
        nu = generator.choice([-1.0, 1.0], size=state.shape)
        propagated = A @ state_tilde
        rho_0 = np.sqrt((abs(theta_tilde) + tiny) / (np.linalg.norm(propagated) + tiny))
        rho_1 = np.sqrt((abs(nu @ B) + tiny) / (np.linalg.norm(nu) + tiny))
        state_tilde = rho_0 * propagated + rho_1 * nu
        theta_tilde = theta_tilde / rho_0 + (nu @ B) / rho_1
        state = A @ state + theta * B
        estimates.append((state[0] - 1.0) * state_tilde[0] * theta_tilde)
    return estimates


def test_influence_balancing_estimates_equal_the_old_closed_forms():
    """Along a moving theta, as the benchmark runs them (K = 1), and RTRL at K = 3."""
    thetas = 0.5 - 0.02 * np.arange(40)
    for steps in (1, 3):
        rtrl = RTRL(influence.SYSTEM)
        np.testing.assert_allclose([rtrl.estimate([theta], None, steps)[0][0] for theta in thetas],
                                   old_rtrl(thetas, steps), rtol=1e-9)
    uoro, generator = UORO(influence.SYSTEM), np.random.default_rng(5)
    np.testing.assert_allclose([uoro.estimate([theta], generator, 1)[0][0] for theta in thetas],
                               old_uoro(thetas, np.random.default_rng(5)), rtol=1e-9)


def test_the_trajectory_and_what_it_carries_restart_at_the_horizon():
    for estimator in (OnlineTBPTT(TOY), RTRL(TOY)):
        first = estimator.estimate(THETA, None, 5)
        for _ in range(3):
            estimator.estimate(THETA, None, 5)
        assert estimator.state is None and estimator.carried is None
        np.testing.assert_array_equal(estimator.estimate(THETA, None, 5)[0], first[0])


def test_toy_regression_gradient_and_schedule():
    """toy2d: closed-form grad f against autodiff; a step at t uses lr_t of the schedule."""
    x = tf.constant(np.random.default_rng(4).normal(0, 2, (6, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(toy2d.inner_loss(x))
    np.testing.assert_allclose(toy2d.inner_gradient(x), tape.gradient(total, x), rtol=1e-5,
                               atol=1e-6)
    theta = tf.constant([[np.log(0.3), np.log(5.0)]], tf.float32)
    start = tf.constant([toy2d.START])
    for steps, rate in ((0, 0.3), (50, 0.5 * 0.3 + 0.5 * 5.0)):
        loss, state = toy2d.SYSTEM.unroll(theta, start, steps, 1)
        expected = start - rate * toy2d.inner_gradient(start)
        np.testing.assert_allclose(state, expected, rtol=1e-6)
        np.testing.assert_allclose(loss, toy2d.inner_loss(expected), rtol=1e-6)


def test_a_system_without_a_horizon_needs_the_length_of_its_meta_objective():
    endless = dataclasses.replace(TOY, horizon=None)
    thetas = tf.constant(THETA[None])
    with pytest.raises(ValueError, match="the system has no horizon; give the number of steps"):
        endless.meta_objective(thetas)
    assert float(endless.meta_objective(thetas, TOY.horizon)[0]) == pytest.approx(
        float(TOY.meta_objective(thetas)[0]))


def test_initial_states_take_the_seed_that_the_es_estimators_pass():
    for system in (influence, toy2d):
        np.testing.assert_array_equal(system.initial_state(seed=7), system.initial_state())

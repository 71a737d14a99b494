"""Online meta-gradients of small recurrent systems: TBPTT, RTRL and UORO.

A ``RecurrentSystem`` (``l2o.systems.recurrent``) runs s_{t+1} = f(s_t, theta, t)
and scores losses L_t(s_t, theta). Each estimator here carries one inner
trajectory across truncations (starting it again at the system's horizon) and
returns, for each truncation, an estimate of the gradient of that truncation's
loss with respect to theta along the whole trajectory so far:

- ``OnlineTBPTT`` differentiates the truncation backwards from its start state, held
  fixed: it sees only the influence theta has within the truncation (biased).
- ``RTRL`` carries the exact influence J_t = ds_t/dtheta forward,
      J_{t+1} = df/ds J_t + df/dtheta,     dL_t/dtheta = dL/ds J_t + dL/dtheta,
  with both Jacobians by automatic differentiation (n (n + m) entries a step).
  At a fixed theta its estimates summed over the truncations of a horizon are
  the horizon's exact gradient.
- ``UORO`` (Tallec and Ollivier 2017) carries an unbiased rank-one estimate
  J_t ~ s_tilde theta_tilde^T instead, at the cost of one Jacobian-vector and
  one vector-Jacobian product a step: with random signs nu each step,
      s_tilde <- rho_0 (df/ds s_tilde) + rho_1 nu,
      theta_tilde <- theta_tilde / rho_0 + (nu^T df/dtheta) / rho_1,
      rho_0 = sqrt(|theta_tilde| / |df/ds s_tilde|),
      rho_1 = sqrt(|nu^T df/dtheta| / |nu|),
  the rho's that minimise the variance (guarded against zeros); it estimates
  dL_t/dtheta by (dL/ds . s_tilde) theta_tilde + dL/dtheta.

They compute in float64: the systems are tiny, and products of many Jacobians
would lose float32's digits.

One interface serves these three and truncated ES and PES
(``l2o.estimators.es``, driven by the system's ``unroll``), the five estimators
the PES paper compares on its toy systems:

    gradient, loss = estimator.estimate(theta, generator, length)

theta a numpy vector, ``generator`` the truncation's numpy Generator (its
noise), ``length`` its steps. They do not implement ``GradientEstimator``
(``l2o.estimators.base``): that interface is the meta-trainer's, for learned
optimisers; it reads the meta-weights from Keras variables, returns one
gradient per variable, hands the trajectory to the trainer to checkpoint and
validates on fresh runs, and a toy system's theta vector has none of these.
"""

import numpy as np
from keras import ops

from l2o import backend

# Guards the rho's of UORO where a norm vanishes (at the start, s_tilde = theta_tilde = 0).
TINY = 1e-12


def one_copy(fn, t):
    """``fn(states, thetas, t)`` of a system, for a single state and theta (particle axis of 1)."""
    return lambda state, theta: fn(state[None], theta[None], t[None])[0]


class OnlineEstimator:
    """One inner trajectory and what the estimator carries along it, across truncations.

    Subclasses give ``start(state, theta)`` (what they carry, at the start of a
    trajectory) and ``truncation(theta, state, carried, times, weights, noise)``
    ``-> (gradient, loss, state, carried)``: ``times`` [K] are the truncation's
    steps t (each from s_t to s_{t+1}), ``weights`` [K] how much the loss after
    each enters the truncation's loss (all 1, or only the last: the system's
    ``reduce``). It is compiled once per truncation length.
    """

    def __init__(self, system):
        self.system = system
        self.state = self.carried = None
        self.step = 0
        self._truncation = backend.compile_fn(self.truncation)

    def noise(self, generator, length):
        """What ``truncation`` draws from: nothing (UORO draws its signs)."""
        return ()

    def estimate(self, theta, generator, length):
        """``(gradient of the truncation's loss, that loss)``; advances the trajectory."""
        theta = ops.convert_to_tensor(np.asarray(theta, np.float64))
        if self.state is None:
            self.state, self.step = self.system.initial_state(dtype="float64"), 0
            self.carried = self.start(self.state, theta)
        weights = np.ones(length) if self.system.reduce == "sum" else np.eye(length)[-1]
        gradient, loss, self.state, self.carried = self._truncation(
            theta, self.state, self.carried,
            ops.convert_to_tensor(self.step + np.arange(length), "float64"),
            ops.convert_to_tensor(weights, "float64"), self.noise(generator, length))
        self.step += length
        if self.system.horizon is not None and self.step >= self.system.horizon:
            self.state = self.carried = None
        return ops.convert_to_numpy(gradient), float(loss)


class OnlineTBPTT(OnlineEstimator):
    """Backpropagation through each truncation, its start state held fixed."""

    def start(self, state, theta):
        return ()

    def truncation(self, theta, state, carried, times, weights, noise):
        def truncation_loss(theta):
            losses, states = self.system.unroll(theta[None], state[None], times[0],
                                                times.shape[0])
            return losses[0], states[0]

        (loss, state), gradient = backend.value_and_grad(truncation_loss, None)(theta)
        return gradient, loss, state, carried


class RTRL(OnlineEstimator):
    """The exact influence ds/dtheta carried forward, online across truncations."""

    def start(self, state, theta):
        return ops.zeros((state.shape[0], theta.shape[0]), "float64")

    def truncation(self, theta, state, influence, times, weights, noise):
        def one_step(carry, step):
            state, influence, gradient, total = carry
            t, weight = step
            state, (by_state, by_theta) = backend.jacobians(one_copy(self.system.step, t),
                                                            [state, theta])
            influence = ops.matmul(by_state, influence) + by_theta
            loss, (loss_by_state, loss_by_theta) = backend.vjp(
                one_copy(self.system.loss, t + 1.0), [state, theta])
            gradient = gradient + weight * (ops.matmul(loss_by_state, influence) + loss_by_theta)
            return (state, influence, gradient, total + weight * loss), ()

        (state, influence, gradient, loss), _ = backend.scan(
            one_step, (state, influence, ops.zeros_like(theta), ops.zeros((), "float64")),
            (times, weights))
        return gradient, loss, state, influence


class UORO(OnlineEstimator):
    """An unbiased rank-one estimate s_tilde theta_tilde^T of the influence."""

    def start(self, state, theta):
        return ops.zeros_like(state), ops.zeros_like(theta)

    def noise(self, generator, length):
        return ops.convert_to_tensor(
            generator.choice([-1.0, 1.0], size=(length,) + tuple(self.state.shape)), "float64")

    def truncation(self, theta, state, carried, times, weights, signs):
        def one_step(carry, step):
            state, state_tilde, theta_tilde, gradient, total = carry
            t, weight, nu = step
            step = one_copy(self.system.step, t)
            new_state, propagated = backend.jvp(step, [state, theta],
                                                [state_tilde, ops.zeros_like(theta)])
            _, (_, pushed) = backend.vjp(step, [state, theta], nu)
            rho_0 = ops.sqrt((ops.norm(theta_tilde) + TINY) / (ops.norm(propagated) + TINY))
            rho_1 = ops.sqrt((ops.norm(pushed) + TINY) / (ops.norm(nu) + TINY))
            state_tilde = rho_0 * propagated + rho_1 * nu
            theta_tilde = theta_tilde / rho_0 + pushed / rho_1
            loss, (loss_by_state, loss_by_theta) = backend.vjp(
                one_copy(self.system.loss, t + 1.0), [new_state, theta])
            gradient = gradient + weight * (
                ops.sum(loss_by_state * state_tilde) * theta_tilde + loss_by_theta)
            return (new_state, state_tilde, theta_tilde, gradient, total + weight * loss), ()

        carry = (state, *carried, ops.zeros_like(theta), ops.zeros((), "float64"))
        (state, state_tilde, theta_tilde, gradient, loss), _ = backend.scan(
            one_step, carry, (times, weights, signs))
        return gradient, loss, state, (state_tilde, theta_tilde)

"""Evolution-strategies meta-gradients: truncated ES and Persistent ES.

Both work on a *vectorised truncation*: ``unroll(thetas, states, K) ->
(losses, states)`` advances P copies of the inner problem K steps at once,
copy p with meta-parameters ``thetas[p]`` from ``states[p]``, and returns each
copy's loss. Particles are evaluated in that one batched call, never in a
Python loop over particles.

Noise is antithetic: N/2 draws eps ~ N(0, sigma^2 I) and their negatives.

Truncated ES (all particles share the inner state s):
    g = sum_i eps_i L(unroll(s, theta + eps_i, K)) / (N sigma^2);
    then s advances with the unperturbed theta.

PES (Vicol, Metz and Sohl-Dickstein, ICML 2021): particle i keeps its own
state s_i and accumulated noise xi_i; each truncation runs
    (L_i, s_i) = unroll(s_i, theta + eps_i, K),   xi_i += eps_i,
    g = sum_i xi_i L_i / (N sigma^2),
so that, summed over the truncations of a horizon, the estimates are unbiased
for the gradient of the (Gaussian-smoothed) total loss. States re-initialise
and xi resets once the inner step count reaches the horizon T (never when T is
None).
"""

import numpy as np
from keras import ops


def antithetic_noise(generator, particles, shape, sigma):
    """``particles`` perturbations (eps_1..eps_{N/2}, -eps_1..-eps_{N/2}), shape [N, *shape]."""
    if particles % 2:
        raise ValueError(f"n_particles must be even (antithetic pairs), got {particles}")
    half = generator.standard_normal((particles // 2,) + tuple(shape)) * sigma
    return np.concatenate([half, -half]).astype(np.float32)


def _weighted_sum(weights, losses, sigma):
    """sum_i weights_i L_i / (N sigma^2) over the leading (particle) axis."""
    losses = ops.reshape(losses, (-1,) + (1,) * (len(weights.shape) - 1))
    return ops.sum(weights * losses, axis=0) / (weights.shape[0] * sigma ** 2)


def _repeat(state, particles):
    return ops.repeat(state[None], particles, axis=0)


class TruncatedES:
    """Truncated ES over one shared inner state."""

    def __init__(self, unroll, init_state, sigma, n_particles, truncation, horizon=None):
        self.unroll, self.init_state = unroll, init_state
        self.sigma, self.particles = float(sigma), int(n_particles)
        self.truncation, self.horizon = int(truncation), horizon
        self.state, self.step = init_state(), 0

    def estimate(self, theta, generator):
        """(gradient estimate, mean perturbed loss); advances the shared state."""
        theta = ops.convert_to_tensor(theta)
        eps = ops.convert_to_tensor(antithetic_noise(generator, self.particles, theta.shape,
                                                     self.sigma), theta.dtype)
        losses, _ = self.unroll(theta[None] + eps, _repeat(self.state, self.particles),
                                self.truncation)
        _, states = self.unroll(theta[None], self.state[None], self.truncation)
        self.state, self.step = states[0], self.step + self.truncation
        if self.horizon is not None and self.step >= self.horizon:
            self.state, self.step = self.init_state(), 0
        return _weighted_sum(eps, losses, self.sigma), ops.mean(losses)


class PES:
    """Persistent ES: per-particle states and accumulated perturbations."""

    def __init__(self, unroll, init_state, sigma, n_particles, truncation, horizon=None):
        self.unroll, self.init_state = unroll, init_state
        self.sigma, self.particles = float(sigma), int(n_particles)
        self.truncation, self.horizon = int(truncation), horizon
        self.reset()

    def reset(self):
        self.states = _repeat(self.init_state(), self.particles)
        self.accumulated, self.step = None, 0

    def estimate(self, theta, generator):
        """(gradient estimate, mean perturbed loss); advances every particle."""
        theta = ops.convert_to_tensor(theta)
        eps = ops.convert_to_tensor(antithetic_noise(generator, self.particles, theta.shape,
                                                     self.sigma), theta.dtype)
        losses, self.states = self.unroll(theta[None] + eps, self.states, self.truncation)
        self.accumulated = eps if self.accumulated is None else self.accumulated + eps
        gradient = _weighted_sum(self.accumulated, losses, self.sigma)
        self.step += self.truncation
        if self.horizon is not None and self.step >= self.horizon:
            self.reset()
        return gradient, ops.mean(losses)

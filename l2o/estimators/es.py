"""Evolution-strategies meta-gradients: truncated ES and Persistent ES.

Both drive a *vectorised truncation*, a callable

    unroll(thetas, states, steps, length) -> (losses [P], states)

that advances P copies of the inner problem ``length`` steps at once, copy p
with meta-parameters ``thetas[p]`` from ``states[p]`` (any pytree whose leaves
have a leading particle axis), ``steps[p]`` being how many inner steps copy p
has taken so far (a numpy array; the inner problem may use it to pick its
batches). ``init_state(generator)`` returns one fresh copy's state. Particles
are evaluated in that one batched call, never in a Python loop over particles.

Noise is antithetic: N/2 draws eps ~ N(0, sigma^2 I) and their negatives.

Truncated ES (all particles share the inner state s):
    g = sum_i eps_i L(unroll(s, theta + eps_i, K)) / (N sigma^2);
    then s advances with the unperturbed theta (in the same batched call).

PES (Vicol, Metz and Sohl-Dickstein, ICML 2021): particle i keeps its own
state s_i and accumulated noise xi_i; each truncation runs
    (L_i, s_i) = unroll(s_i, theta + eps_i, K),   xi_i += eps_i,
    g = sum_i xi_i L_i / (N sigma^2),
so that, summed over the truncations of a horizon, the estimates are unbiased
for the gradient of the (Gaussian-smoothed) total loss. A particle's state
re-initialises and its xi resets once its step count reaches the horizon T
(never when T is None). ``lockstep`` particles all start together;
``breakstep`` staggers antithetic pair j's first horizon to end after
T (1 - j / (N/2)) steps, so that resets (and fresh, high-loss starts) are
spread over time instead of hitting every particle at once.
"""

import keras
import numpy as np
from keras import ops

from l2o import tree
from l2o.validation import check_choice

STAGGERS = ("lockstep", "breakstep")


def antithetic_noise(generator, particles, shape, sigma):
    """``particles`` perturbations (eps_1..eps_{N/2}, -eps_1..-eps_{N/2}), shape [N, *shape]."""
    if particles % 2:
        raise ValueError(f"n_particles must be even (antithetic pairs), got {particles}")
    half = generator.standard_normal((particles // 2,) + tuple(shape)) * sigma
    return np.concatenate([half, -half]).astype(np.float32)


def es_gradient(directions, losses, sigma):
    """sum_i directions_i L_i / (N sigma^2) over the leading (particle) axis."""
    losses = np.asarray(losses, np.float64).reshape((-1,) + (1,) * (directions.ndim - 1))
    return (np.sum(directions * losses, axis=0) / (directions.shape[0] * sigma ** 2)).astype(
        np.float32)


def repeat_state(state, particles):
    """One copy's state stacked ``particles`` times along a new leading axis."""
    return keras.tree.map_structure(
        lambda t: ops.repeat(ops.convert_to_tensor(t)[None], particles, axis=0), state)


def _reset_where(mask, fresh, states):
    """``states`` with the copies where ``mask`` is set replaced by ``fresh``."""
    def select(new, old):
        old = ops.convert_to_tensor(old)
        shaped = np.reshape(mask, (-1,) + (1,) * (len(old.shape) - 1))
        return ops.where(shaped, ops.cast(ops.convert_to_tensor(new)[None], old.dtype), old)

    return keras.tree.map_structure(select, fresh, states)


class TruncatedES:
    """Truncated ES over one shared inner state.

    The N perturbed copies and the unperturbed one that carries the state on
    run in one batched call of N + 1 copies.
    """

    def __init__(self, unroll, init_state, sigma, n_particles, horizon=None):
        self.unroll, self.init_state = unroll, init_state
        self.sigma, self.particles, self.horizon = float(sigma), int(n_particles), horizon
        self.state, self.step = None, 0

    def estimate(self, theta, generator, length):
        """(gradient estimate, mean perturbed loss); advances the shared state."""
        theta = np.asarray(theta, np.float32)
        if self.state is None:
            self.state = self.init_state(generator)
        eps = antithetic_noise(generator, self.particles, theta.shape, self.sigma)
        thetas = np.concatenate([theta[None] + eps, theta[None]])
        losses, states = self.unroll(
            ops.convert_to_tensor(thetas), repeat_state(self.state, self.particles + 1),
            np.full(self.particles + 1, self.step), length)
        losses = ops.convert_to_numpy(losses)
        self.state = keras.tree.map_structure(lambda t: t[-1], states)
        self.step += length
        if self.horizon is not None and self.step >= self.horizon:
            self.state, self.step = self.init_state(generator), 0
        # A carried state gone non-finite makes the reported loss non-finite, so that
        # the caller restarts rather than going on from it.
        mean = float(np.mean(losses[:-1])) if np.isfinite(losses[-1]) else float("nan")
        return es_gradient(eps, losses[:-1], self.sigma), mean

    def arrays(self):
        """Everything a resumed run needs, as named numpy arrays (none before the start)."""
        if self.state is None:
            return {}
        return {"step": np.asarray(self.step), **tree.to_arrays("state", self.state)}

    def load_arrays(self, arrays, template):
        """Inverse of ``arrays``; ``template`` is any one inner state (for its structure)."""
        if "step" in arrays:
            self.state, self.step = tree.from_arrays("state", arrays, template), int(arrays["step"])


class PES:
    """Persistent ES: per-particle states, step counts and accumulated perturbations."""

    def __init__(self, unroll, init_state, sigma, n_particles, horizon=None,
                 stagger="lockstep"):
        check_choice("stagger", stagger, STAGGERS)
        if stagger == "breakstep" and horizon is None:
            raise ValueError("breakstep staggers resets at the horizon: set a horizon")
        self.unroll, self.init_state = unroll, init_state
        self.sigma, self.particles = float(sigma), int(n_particles)
        self.horizon, self.stagger = horizon, stagger
        self.states = self.accumulated = self.steps = None

    def start(self, generator, dimension):
        pairs = self.particles // 2
        self.states = repeat_state(self.init_state(generator), self.particles)
        self.accumulated = np.zeros((self.particles, dimension), np.float32)
        offsets = np.zeros(pairs, np.int64)
        if self.stagger == "breakstep":
            offsets = (np.arange(pairs) * self.horizon) // pairs
        self.steps = np.concatenate([offsets, offsets])

    def estimate(self, theta, generator, length):
        """(gradient estimate, mean perturbed loss); advances every particle."""
        theta = np.asarray(theta, np.float32)
        if self.states is None:
            self.start(generator, theta.size)
        eps = antithetic_noise(generator, self.particles, theta.shape, self.sigma)
        losses, self.states = self.unroll(ops.convert_to_tensor(theta[None] + eps),
                                          self.states, self.steps, length)
        losses = ops.convert_to_numpy(losses)
        self.accumulated = self.accumulated + eps
        gradient = es_gradient(self.accumulated, losses, self.sigma)
        self.steps = self.steps + length
        if self.horizon is not None:
            finished = self.steps >= self.horizon
            if finished.any():
                self.states = _reset_where(finished, self.init_state(generator), self.states)
                self.accumulated[finished] = 0.0
                self.steps[finished] = 0
        return gradient, float(np.mean(losses))

    def arrays(self):
        """Everything a resumed run needs, as named numpy arrays (none before the start)."""
        if self.states is None:
            return {}
        return {"steps": self.steps, "accumulated": self.accumulated,
                **tree.to_arrays("states", self.states)}

    def load_arrays(self, arrays, template):
        """Inverse of ``arrays``; ``template`` is one particle's state (for its structure)."""
        if "steps" in arrays:
            self.steps = np.array(arrays["steps"])
            self.accumulated = np.array(arrays["accumulated"])
            self.states = tree.from_arrays("states", arrays, template)

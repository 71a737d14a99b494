"""Euler–Maruyama for the controlled SDE of the Path Integral Sampler, on TensorFlow Probability.

The SDE on [0, t_end], from x_0 = 0 in R^d, with diffusion coefficient g and
the scales a (drift) and b (noise) that PIO's ``sigma_rescaling`` sets:

    dx = a g u(x, t) dt + b g dW

is discretised with n = round(t_end / dt) steps, t_k = k dt:

    x_{k+1} = x_k + a g u(x_k, t_k) dt + b g sqrt(dt) z_k,    z_k ~ N(0, I).

Relative to the noise the control is v = (a / b) u, and by Girsanov's theorem
the log-density of the controlled path against the uncontrolled one (u = 0) is
the running cost plus the stochastic cost

    c = sum_k 0.5 ||v_k||^2 dt,        s = sum_k v_k . sqrt(dt) z_k.

The uncontrolled terminal law is N(0, b^2 g^2 t_end I) exactly, even after
discretisation (a sum of Gaussian increments). The Brownian increments and the
terminal prior are ``tfp.distributions``; randomness comes from one stateless
TFP seed, split once per step, so a solve is a pure function of its seed and
differentiable end to end with respect to everything ``u`` depends on.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from l2o import backend

tfd = tfp.distributions


def stateless_seed(seed):
    """A [2] int32 stateless seed from an int (deterministically) or a [2] tensor.

    ``tfp.random.sanitize_seed`` would turn an int into a *stateful* draw, so
    two solves with the same int seed would differ.
    """
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    return tf.cast(seed, tf.int32)


def steps(t_end, dt):
    """How many steps of ``dt`` make ``t_end``: they must divide it (else the terminal
    prior N(0, b^2 g^2 t_end I) and the remaining times would be wrong)."""
    count = round(t_end / dt)
    if count < 1 or abs(count * dt - t_end) > 1e-6 * t_end:
        raise ValueError(f"dt = {dt} must divide t_end = {t_end} into whole steps")
    return count


def terminal_prior(dimension, t_end, diffusion, noise_scale=1.0, dtype=tf.float32):
    """The uncontrolled terminal law N(0, b^2 g^2 t_end I)."""
    scale = noise_scale * diffusion * math.sqrt(t_end)
    return tfd.MultivariateNormalDiag(loc=tf.zeros([dimension], dtype),
                                      scale_diag=tf.fill([dimension], tf.cast(scale, dtype)))


# The Path Integral Sampler's defaults: t_end g^2 = 1, a unit-variance prior.
T_END, DIFFUSION, DT = 5.0, math.sqrt(0.2), 0.05


def integrate(drift, dimension, trajectories, seed, t_end=T_END, diffusion=DIFFUSION,
              dt=DT, drift_scale=1.0, noise_scale=1.0, dtype=tf.float32):
    """Solves the SDE for ``trajectories`` independent paths.

    ``drift(x [trajectories, d], t scalar) -> u [trajectories, d]``; ``seed``
    is a TFP stateless seed (an int or a [2] int tensor). Returns the terminal
    points [trajectories, d], the running cost c [trajectories] and the
    stochastic cost s [trajectories].
    """
    count = steps(t_end, dt)
    step_seeds = tf.stack(tfp.random.split_seed(stateless_seed(seed), n=count))
    times = tf.range(count, dtype=dtype) * dt
    increment = tfd.Normal(tf.zeros([], dtype), tf.cast(math.sqrt(dt), dtype))
    ratio = drift_scale / noise_scale

    def step(carry, inputs):
        x, running, stochastic = carry
        step_seed, t = inputs
        noise = increment.sample([trajectories, dimension], seed=step_seed)
        control = drift(x, t)
        relative = ratio * control
        x = x + drift_scale * diffusion * control * dt + noise_scale * diffusion * noise
        running = running + 0.5 * tf.reduce_sum(tf.square(relative), axis=1) * dt
        stochastic = stochastic + tf.reduce_sum(relative * noise, axis=1)
        return (x, running, stochastic), ()

    zeros = tf.zeros([trajectories], dtype)
    (terminal, running, stochastic), _ = backend.scan(
        step, (tf.zeros([trajectories, dimension], dtype), zeros, zeros), (step_seeds, times))
    return terminal, running, stochastic

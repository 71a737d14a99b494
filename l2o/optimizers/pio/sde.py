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

from keras import ops

from l2o import backend


def steps(t_end, dt):
    """How many steps of ``dt`` make ``t_end``: they must divide it (else the terminal
    prior N(0, b^2 g^2 t_end I) and the remaining times would be wrong)."""
    count = round(t_end / dt)
    if count < 1 or abs(count * dt - t_end) > 1e-6 * t_end:
        raise ValueError(f"dt = {dt} must divide t_end = {t_end} into whole steps")
    return count


def terminal_prior(dimension, t_end, diffusion, noise_scale=1.0, dtype="float32"):
    """The uncontrolled terminal law N(0, b^2 g^2 t_end I)."""
    scale = noise_scale * diffusion * math.sqrt(t_end)
    return backend.probability().distributions.MultivariateNormalDiag(
        loc=ops.zeros([dimension], dtype),
        scale_diag=ops.full([dimension], scale, dtype=dtype))


# The Path Integral Sampler's defaults: t_end g^2 = 1, a unit-variance prior.
T_END, DIFFUSION, DT = 5.0, math.sqrt(0.2), 0.05


def integrate(drift, dimension, trajectories, seed, t_end=T_END, diffusion=DIFFUSION,
              dt=DT, drift_scale=1.0, noise_scale=1.0, dtype="float32"):
    """Solves the SDE for ``trajectories`` independent paths.

    ``drift(x [trajectories, d], t scalar) -> u [trajectories, d]``; ``seed``
    is a TFP stateless seed (an int or a [2] int tensor). Returns the terminal
    points [trajectories, d], the running cost c [trajectories] and the
    stochastic cost s [trajectories].
    """
    count = steps(t_end, dt)
    step_seeds = backend.split_seed(seed, count)
    times = ops.arange(count, dtype=dtype) * dt
    increment = backend.probability().distributions.Normal(
        ops.zeros([], dtype), ops.cast(math.sqrt(dt), dtype))
    ratio = drift_scale / noise_scale

    def step(carry, inputs):
        x, running, stochastic = carry
        step_seed, t = inputs
        noise = increment.sample([trajectories, dimension], seed=step_seed)
        control = drift(x, t)
        relative = ratio * control
        x = x + drift_scale * diffusion * control * dt + noise_scale * diffusion * noise
        running = running + 0.5 * ops.sum(ops.square(relative), axis=1) * dt
        stochastic = stochastic + ops.sum(relative * noise, axis=1)
        return (x, running, stochastic), ()

    zeros = ops.zeros([trajectories], dtype)
    (terminal, running, stochastic), _ = backend.scan(
        step, (ops.zeros([trajectories, dimension], dtype), zeros, zeros), (step_seeds, times))
    return terminal, running, stochastic

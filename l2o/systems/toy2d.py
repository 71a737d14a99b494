"""Toy 2-D regression (Vicol, Metz and Sohl-Dickstein, ICML 2021, section 5.2).

Inner problem: SGD on

    f(x) = sqrt(x0^2 + 5) - sqrt(5) + sin(x1)^2 exp(-5 x0^2) + 0.25 |x1 - 100|

from x = (1, 1), with the learning-rate schedule of meta-parameters theta,

    lr_t = (1 - t/T) e^theta0 + (t/T) e^theta1,     T = 100 inner steps,

and meta-objective the sum over the horizon of the inner losses f(x_t) after
each step. The sin^2 term makes the meta-loss surface oscillate where the
rates are large: short truncations see only that local structure.
``SYSTEM`` is it as a ``RecurrentSystem``: the state is x, the step t comes
from the step count (thetas [P, 2], states [P, 2] over particles), and a
truncation scores the sum of its steps' losses.
"""

import math

from keras import ops

from l2o.systems.recurrent import RecurrentSystem

HORIZON = 100
START = (1.0, 1.0)


def inner_loss(x):
    """f at each row of ``x`` [P, 2]."""
    x0, x1 = x[:, 0], x[:, 1]
    return (ops.sqrt(ops.square(x0) + 5.0) - math.sqrt(5.0)
            + ops.square(ops.sin(x1)) * ops.exp(-5.0 * ops.square(x0))
            + 0.25 * ops.abs(x1 - 100.0))


def inner_gradient(x):
    """grad f at each row of ``x`` [P, 2], in closed form."""
    x0, x1 = x[:, 0], x[:, 1]
    bump = ops.exp(-5.0 * ops.square(x0))
    d0 = x0 / ops.sqrt(ops.square(x0) + 5.0) - 10.0 * x0 * ops.square(ops.sin(x1)) * bump
    d1 = 2.0 * ops.sin(x1) * ops.cos(x1) * bump + 0.25 * ops.sign(x1 - 100.0)
    return ops.stack([d0, d1], axis=1)


def initial_state(seed=None, dtype="float32"):
    """x_0 = (1, 1); deterministic (``seed`` is for the ES protocol)."""
    return ops.convert_to_tensor(START, dtype)


def step(x, thetas, t):
    """One SGD step of each row of ``x`` at the rate the schedule gives step ``t``."""
    progress = t[:, None] / HORIZON
    rate = (1.0 - progress) * ops.exp(thetas[:, :1]) + progress * ops.exp(thetas[:, 1:])
    return x - rate * inner_gradient(x)


def loss(x, thetas, t):
    return inner_loss(x)


SYSTEM = RecurrentSystem(step, loss, initial_state, horizon=HORIZON)

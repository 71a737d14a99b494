"""Toy 2-D regression (Vicol, Metz and Sohl-Dickstein, ICML 2021, section 5.2).

Inner problem: SGD on

    f(x) = sqrt(x0^2 + 5) - sqrt(5) + sin(x1)^2 exp(-5 x0^2) + 0.25 |x1 - 100|

from x = (1, 1), with the learning-rate schedule of meta-parameters theta,

    lr_t = (1 - t/T) e^theta0 + (t/T) e^theta1,     T = 100 inner steps,

and meta-objective the sum over the horizon of the inner losses f(x_t) after
each step. The sin^2 term makes the meta-loss surface oscillate where the
rates are large: short truncations see only that local structure. The
truncation is vectorised over particles: thetas are [P, 2], states [P, 3]
(x0, x1 and the step t), in the protocol of ``l2o.estimators.es``.
"""

import math

from keras import ops

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


def initial_state(generator=None, dtype="float32"):
    """(x0, x1, t) = (1, 1, 0); deterministic (``generator`` is for the ES protocol)."""
    return ops.convert_to_tensor([START[0], START[1], 0.0], dtype)


def unroll(thetas, states, length, horizon=HORIZON):
    """``(sum of f after each of ``length`` steps [P], states [P, 3])``."""
    x, t = states[:, :2], states[:, 2:]
    total = ops.zeros_like(t[:, 0])
    for _ in range(length):
        progress = t / horizon
        rate = (1.0 - progress) * ops.exp(thetas[:, :1]) + progress * ops.exp(thetas[:, 1:])
        x = x - rate * inner_gradient(x)
        t = t + 1.0
        total = total + inner_loss(x)
    return total, ops.concatenate([x, t], axis=1)


def truncation(thetas, states, steps, length):
    """``unroll`` in the protocol of ``l2o.estimators.es`` (the step lives in the state)."""
    return unroll(thetas, states, length)


def meta_objective(thetas, horizon=HORIZON):
    """The full-horizon meta-objective at each row of ``thetas`` [P, 2]."""
    states = ops.repeat(initial_state(dtype=thetas.dtype)[None], ops.shape(thetas)[0], axis=0)
    return unroll(thetas, states, horizon, horizon)[0]

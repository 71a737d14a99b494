"""Influence balancing (Tallec and Ollivier 2017; used by Vicol et al. 2021 for PES).

A linear system whose parameter theta pushes the first state coordinate up
through 10 coordinates and down through 13:

    s <- A s + theta b,   A = 0.5 I + 0.5 (superdiagonal),   b = (+1 x10, -1 x13),
    s_0 = 1,  loss after a truncation of K steps: 0.5 (s[0] - 1)^2.

At the fixed point s*[0] = 2 theta (10 - 13) = -6 theta, so the loss vanishes
at theta* = -1/6. Short truncations see only the fast, positive influence
and push theta the wrong way; that is what makes it a test of estimator bias.
``SYSTEM`` is it as a ``RecurrentSystem`` (time-invariant, no horizon, a
truncation scored by its last state); its ``unroll`` is vectorised over
particles (thetas [P, 1], states [P, 23]) in the protocol of the ES
estimators.
"""

import numpy as np
from keras import ops

from l2o.systems.recurrent import RecurrentSystem

DIMENSION = 23


def transition():
    a = 0.5 * np.eye(DIMENSION) + 0.5 * np.eye(DIMENSION, k=1)
    b = np.array([1.0] * 10 + [-1.0] * 13)
    return a.astype(np.float32), b.astype(np.float32)


def initial_state(seed=None, dtype="float32"):
    """s_0 = 1 (deterministic: ``seed``, for the ES protocol, is unused)."""
    return ops.ones((DIMENSION,), dtype)


def step(states, thetas, t):
    a, b = transition()
    return (ops.matmul(states, ops.convert_to_tensor(a.T, states.dtype))
            + thetas * ops.convert_to_tensor(b, states.dtype))


def loss(states, thetas, t):
    return 0.5 * ops.square(states[:, 0] - 1.0)


SYSTEM = RecurrentSystem(step, loss, initial_state, reduce="last")

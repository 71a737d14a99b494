"""Small recurrent systems: the inner problems of the estimator-bias experiments.

A system is its one-step dynamics and its loss,

    s_{t+1} = step(s_t, theta, t),     L_t = loss(s_t, theta, t),

written for a leading particle axis (states [P, n], thetas [P, m], t [P], the
step's index as a float) so that the same definition serves the particles of
ES and PES and, with P = 1, the Jacobians of RTRL and UORO
(``l2o.estimators.online``). A truncation of K steps from step t0 scores the
states it reaches: the sum of L_{t0+1} .. L_{t0+K} (``reduce="sum"``), or
L_{t0+K} alone (``reduce="last"``). After ``horizon`` steps the inner run
starts again from ``initial_state`` (never when ``horizon`` is None).
"""

from collections.abc import Callable
from dataclasses import dataclass

from keras import ops

from l2o.validation import check_choice

REDUCTIONS = ("sum", "last")


@dataclass(frozen=True)
class RecurrentSystem:
    step: Callable
    loss: Callable
    initial_state: Callable  # (seed=None, dtype="float32") -> one copy's state [n]
    horizon: int | None = None
    reduce: str = "sum"

    def __post_init__(self):
        check_choice("reduce", self.reduce, REDUCTIONS)

    def unroll(self, thetas, states, steps, length):
        """``(truncation losses [P], states [P, n])`` after ``length`` steps.

        ``steps`` (a number or one per particle) counts the steps each copy
        has taken since its start: the protocol of ``l2o.estimators.es``.
        """
        states = ops.broadcast_to(states, (ops.shape(thetas)[0], ops.shape(states)[1]))
        t = ops.cast(ops.convert_to_tensor(steps), states.dtype) + ops.zeros_like(states[:, 0])
        total = 0.0
        for _ in range(length):
            states = self.step(states, thetas, t)
            t = t + 1.0
            loss = self.loss(states, thetas, t)
            total = loss if self.reduce == "last" else total + loss
        return total, states

    def meta_objective(self, thetas, length=None):
        """The loss of one truncation over the whole horizon (or ``length`` steps) from the
        start, at each row of ``thetas`` [P, m]."""
        length = length or self.horizon
        if length is None:
            raise ValueError("RecurrentSystem.meta_objective: the system has no horizon; "
                             "give the number of steps as length")
        start = self.initial_state(dtype=thetas.dtype)[None]
        states = ops.repeat(start, ops.shape(thetas)[0], axis=0)
        return self.unroll(thetas, states, 0, length)[0]

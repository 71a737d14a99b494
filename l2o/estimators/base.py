"""The interface every meta-gradient estimator implements.

After learned_optimization's ``GradientEstimator``, whose method names it
keeps: an estimator owns the compiled work of one problem and reads the
meta-weights from the variables it was built with. What it carries between
the truncations of one task (a trajectory in progress, a particle
population, or nothing) is its *worker state*, learned_optimization's word;
a task runner (``l2o.task_runners``) keeps those states, and the trainer's
epoch loop, for each truncation, asks for an estimate, applies the
meta-gradient when it is usable, and starts the task afresh when the
estimator says so.

    state = estimator.init_worker_state(seed)
    estimate, state = estimator.compute_gradient_estimate(state, generator, length)

``generator`` is the truncation's numpy Generator (its noise, its batches);
``length`` the truncation's inner steps as the strategy drew them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


class GradientEstimate(NamedTuple):
    """One truncation's result.

    ``loss``: the meta-loss (or imitation loss) it scored; ``grads``: one
    tensor per meta-variable; ``usable``: the loss and every gradient are
    finite (only then is it applied); ``steps``: inner steps taken;
    ``restart``: the worker state must start afresh (a non-finite or exploded
    trajectory); ``kind``: the metric it is logged under; ``applied``: the
    estimator already applied the meta-update, inside its own compiled
    truncation (``GradientEstimator.fuse_meta_update``).
    """

    loss: float
    grads: Any
    usable: bool
    steps: int
    restart: bool
    kind: str = "meta_loss"
    applied: bool = False


class EstimatorSpec(abc.ABC):
    """A meta-gradient estimator as a config chooses it (``estimator_constructor``).

    A registered subclass (``@ESTIMATORS.register("name")``) is the one place of
    what its ``estimator:`` section takes: its keyword defaults are the
    section's defaults, ``validate_config`` its checks (of the section and of
    what the estimator needs from the rest of the config), and ``build`` makes
    the ``GradientEstimator`` of one problem from that problem's ``TBPTT``
    (which compiles the unroll every estimator here runs). Adding an estimator
    is one module holding its ``GradientEstimator`` and its spec::

        @ESTIMATORS.register("tbptt")
        class TBPTTSpec(EstimatorSpec):
            differentiates = True

            def build(self, tbptt):
                return tbptt
    """

    # Whether its meta-gradient backpropagates through the inner steps (so the scored
    # quantity and the update rule must be differentiable).
    differentiates = False

    @classmethod
    def validate_config(cls, estimator: dict, config: dict) -> None:
        """Raises ConfigError naming the key (``estimator/<key>`` or another section's) for
        a value this estimator cannot honour; ``estimator`` is the completed section."""

    def distributed_units(self) -> int | None:
        """How many parts of one truncation distributed workers may share (antithetic pairs
        of particles); None: whole tasks go to workers instead."""
        return None

    @abc.abstractmethod
    def build(self, tbptt) -> GradientEstimator:
        """The estimator of the problem that ``tbptt`` (an ``l2o.estimators.TBPTT``) unrolls."""


class GradientEstimator(abc.ABC):
    """Meta-gradients of one problem; see the module docstring."""

    @abc.abstractmethod
    def init_worker_state(self, seed: int) -> Any:
        """A fresh worker state whose inner run is keyed by the integer ``seed``."""

    @abc.abstractmethod
    def compute_gradient_estimate(self, worker_state: Any, generator: np.random.Generator,
                                  length: int, teacher=None) -> tuple[GradientEstimate, Any]:
        """``(GradientEstimate, new worker state)`` for one truncation.

        ``teacher`` (an ``l2o.imitation.Teacher``) asks for an imitation
        truncation instead; estimators that cannot imitate refuse in config
        validation, before any work.
        """

    @abc.abstractmethod
    def validation_metrics(self, unroll: int, seed: int) -> dict[str, float]:
        """``{metric: float}`` of a fresh ``unroll``-step run from ``seed``.

        Holds at least ``validation_meta_loss`` (what picks the best
        checkpoint) and ``validation_final_loss``.
        """

    @abc.abstractmethod
    def worker_arrays(self, worker_state: Any) -> tuple[dict[str, np.ndarray], dict]:
        """``(named numpy arrays, JSON info)`` that ``load_worker_state`` rebuilds it from."""

    @abc.abstractmethod
    def load_worker_state(self, arrays: dict[str, np.ndarray], info: dict) -> Any:
        """The worker state that ``worker_arrays`` gave ``(arrays, info)`` for."""

    def fuse_meta_update(self, update: Callable, variables: list) -> bool:
        """Offers ``update(grads, usable)``, a traceable function that applies the
        meta-optimiser to the meta-weights when ``usable`` (a boolean tensor) is true and
        reads and assigns the Keras ``variables``. An estimator that can run it in the same
        compiled call as a meta-loss truncation answers True, and from then on
        ``compute_gradient_estimate(..., update=True)`` applies it and returns the estimate
        with ``applied`` set; by default it declines (False), is never asked to, and the
        trainer applies its estimates. Offered only where each meta-update is one
        truncation's gradient (a sequential meta-batch in this process)."""
        return False

    def distributable(self, key: tuple) -> list[tuple[tuple, GradientEstimator]]:
        """``(key, estimator)`` of the estimators within this one (named by ``key``, a
        tuple) whose work can run on distributed workers: none by default."""
        return []

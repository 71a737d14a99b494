"""What a learned optimiser is trained and evaluated on.

A problem is pure: ``init(seed)`` gives initial parameters, ``loss(params,
batch)`` is written with ``keras.ops``, and ``batches(seed, start, count)``
gives the batches of steps ``start .. start + count - 1`` of the data stream
that ``seed`` picks, stacked on a leading axis. The stream is a function of
(seed, step) alone, so a run resumed mid-way, a learned optimiser and a
baseline all see identical batches. ``build_model(params)`` gives the
equivalent ``keras.Model`` whose ``trainable_variables`` line up with
``params``.

A problem may stand for several tasks (a task family, ``l2o.problems.family``):
``members()`` lists them and ``member_of(seed)`` picks the one that the run
keyed by ``seed`` trains on; a single task is its own only member.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np
from keras import ops

from l2o.streams import Stream, rng


class Problem:
    @classmethod
    def validate_config(cls, prefix, kwargs):
        """Raises ConfigError naming ``<prefix><key>`` for a value out of range."""

    def init(self, seed: int) -> list[np.ndarray]:
        """Initial parameters: a list of float32 numpy arrays."""
        raise NotImplementedError

    def loss(self, params: list, batch: tuple) -> Any:
        """Scalar training loss of ``params`` on ``batch``."""
        raise NotImplementedError

    def batches(self, seed: int, start: int, count: int) -> tuple[np.ndarray, ...]:
        """Batches ``start .. start + count - 1`` of stream ``seed``, stacked on axis 0."""
        raise NotImplementedError

    def steps_per_pass(self):
        """Steps in one pass over the training data, or None where every step's data is fresh."""
        return

    def validation_batch(self):
        """Held-out data for validation loss and accuracy, or None."""
        return

    def accuracy(self, params, batch):
        """Classification accuracy, or None where it means nothing."""
        return

    @classmethod
    def offers(cls, kwargs):
        """Which of {"validation", "accuracy"} (a ``validation_batch``, an ``accuracy``) the
        instance built from ``kwargs`` has: what the config checks a meta-objective's needs
        against (``training/meta_objective``) before any data loads."""
        return frozenset()

    def validation_batches(self, seed, start, count, size):
        """Minibatches of ``size`` examples of ``validation_batch()`` (all, if it holds fewer)
        for steps ``start .. start + count - 1`` of stream ``seed``, stacked on axis 0.

        Each is drawn without replacement by (seed, step) alone, as the training
        batches are, so a truncation, a particle and a resumed run meet the same one.
        """
        data = self.validation_batch()
        total = len(data[0])
        picks = np.stack([rng(Stream.VALIDATION_DATA, seed, step).choice(
            total, min(size, total), replace=False) for step in range(start, start + count)])
        return tuple(part[picks] for part in data)

    def build_model(self, params):
        """A ``keras.Model`` computing the same function, its weights set to ``params``."""
        raise NotImplementedError

    def members(self):
        """The distinct tasks this problem stands for, each compiled on its own."""
        return [self]

    def member_of(self, seed):
        """Index into ``members()`` of the task that run ``seed`` trains on."""
        return 0


def offered(target, kwargs):
    """``target.offers(kwargs)`` for a problem class; for a function that builds a problem,
    both (what it builds is unknown until then, and its arguments go unchecked too)."""
    if hasattr(target, "offers"):
        return target.offers(kwargs)
    return frozenset({"validation", "accuracy"})


def glorot_uniform(shapes, seed):
    """Glorot-uniform kernels and zero biases (rank 1), as Keras initialises its layers."""
    generator, params = rng(Stream.PROBLEM_INIT, seed), []
    for shape in shapes:
        if len(shape) == 1:
            params.append(np.zeros(shape, np.float32))
            continue
        receptive = int(np.prod(shape[:-2]))
        limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        params.append(generator.uniform(-limit, limit, shape).astype(np.float32))
    return params


def dense_shapes(sizes):
    """Kernel and bias shapes of a dense stack with layer widths ``sizes`` (input first)."""
    return [shape for n_in, n_out in itertools.pairwise(sizes)
            for shape in ((n_in, n_out), (n_out,))]


def dense_stack(params, inputs, activation):
    """``inputs`` (batch, features) through kernel/bias pairs; no activation on the last."""
    hidden, activation = inputs, keras.activations.get(activation)
    for index in range(0, len(params), 2):
        hidden = ops.matmul(hidden, params[index]) + params[index + 1]
        if index + 2 < len(params):
            hidden = activation(hidden)
    return hidden

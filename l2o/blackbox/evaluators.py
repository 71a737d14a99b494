"""How the candidates of one ES step are scored: one at a time, all at once, or on Ray workers."""

import functools
import itertools
import weakref

import numpy as np
from keras import ops

from l2o import backend, distributed


def vectorized(objective):
    """Marks ``objective`` as evaluating all candidates at once from stacked weights."""
    objective.vectorized = True
    return objective


_COMPILED_FORWARDS = weakref.WeakKeyDictionary()


def batched_forward(model, stacked_weights, inputs, per_candidate_inputs=False):
    """Outputs of ``model`` for every candidate weight set, in one compiled call.

    ``stacked_weights`` is aligned with ``model.trainable_variables``, each shaped
    [n, *weight.shape]; non-trainable weights keep their current values. ``inputs`` is one
    batch shared by all candidates, or with ``per_candidate_inputs`` a batch per candidate
    stacked along a leading axis of size n. Returns [n, *output_shape].
    """
    compiled = _COMPILED_FORWARDS.setdefault(model, {})
    if per_candidate_inputs not in compiled:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        def forward(weights, fixed, batch):
            return model_ref().stateless_call(weights, fixed, batch)[0]

        # The non-trainable values are an argument: read inside, JAX would keep the first
        # trace's values.
        if per_candidate_inputs:
            def forward_all(stacked, fixed, batches):
                return ops.vectorized_map(lambda pair: forward(pair[0], fixed, pair[1]),
                                          (stacked, batches))
        else:
            def forward_all(stacked, fixed, batch):
                return ops.vectorized_map(lambda weights: forward(weights, fixed, batch),
                                          stacked)

        compiled[per_candidate_inputs] = backend.compile_fn(forward_all,
                                                            relax_leading_dim=True)
    return compiled[per_candidate_inputs](
        list(stacked_weights), [v.value for v in model.non_trainable_variables], inputs)


def _evaluate_candidates(model, objective, center, offsets, samples):
    """Objective values of candidates ``center + offsets[:, j]``, one at a time on ``model``.

    ``offsets`` maps a trainable-variable index to that variable's perturbations [m, ...];
    the other variables stay at ``center``. Leaves ``model`` at ``center``.
    """
    variables = model.trainable_variables
    for variable, value in zip(variables, center):
        variable.assign(value)
    count = len(next(iter(offsets.values())))
    values = []
    for candidate in range(count):
        for index, offset in offsets.items():
            variables[index].assign(center[index] + offset[candidate])
        values.append(_objective_vector(objective(model, samples)))
    for index in offsets:
        variables[index].assign(center[index])
    return values


def _objective_vector(value):
    vector = np.asarray(ops.convert_to_numpy(value), np.float64).reshape(-1)
    if vector.size == 0:
        raise ValueError("the objective returned no value")
    return vector


def _stack_rows(rows):
    if len({row.size for row in rows}) != 1:
        raise ValueError(f"the objective returned different numbers of values for "
                         f"different candidates: {sorted({row.size for row in rows})}")
    return np.stack(rows)


class CandidateEvaluator:
    """How the candidates of one ES step are scored: ``evaluator(center, offsets, samples)``.

    ``center`` holds the current weights (numpy, aligned with
    ``model.trainable_variables``), ``offsets`` maps a variable index to its n
    perturbations; the result is the [n, K] objective values. ``close()``
    releases what the evaluator holds (workers).
    """

    def __call__(self, center, offsets, samples):
        raise NotImplementedError

    def close(self):
        """Nothing to release by default."""


class LocalEvaluator(CandidateEvaluator):
    """One candidate at a time on the model itself, in this process (also the body of each
    ``WorkerEvaluator`` worker)."""

    def __init__(self, model, objective):
        self.model, self.objective = model, objective

    def __call__(self, center, offsets, samples):
        return _stack_rows(_evaluate_candidates(self.model, self.objective, center, offsets,
                                                samples))


class VectorizedEvaluator(CandidateEvaluator):
    """Every candidate in one call of a vectorised objective on stacked weights."""

    def __init__(self, objective, n_samples):
        self.objective, self.n_samples = objective, n_samples

    def __call__(self, center, offsets, samples):
        stacked = [center[i][None] + offsets[i] if i in offsets
                   else np.broadcast_to(center[i], (self.n_samples,) + center[i].shape)
                   for i in range(len(center))]
        values = np.asarray(ops.convert_to_numpy(self.objective(stacked, samples)), np.float64)
        if values.ndim not in (1, 2) or values.shape[0] != self.n_samples:
            raise ValueError(f"a vectorised objective must return shape [{self.n_samples}] "
                             f"or [{self.n_samples}, K], got {values.shape}")
        return values.reshape(self.n_samples, -1)


class WorkerEvaluator(CandidateEvaluator):
    """Candidates split across Ray workers, each holding a copy of the model and objective.

    The workers start on the first call (each imports TensorFlow).
    """

    def __init__(self, model, objective, n_workers, address=None):
        self.model, self.objective = model, objective
        self.n_workers, self.address = n_workers, address
        self._workers = None

    def __call__(self, center, offsets, samples):
        if self._workers is None:
            self._workers = distributed.Workers(
                functools.partial(LocalEvaluator, self.model, self.objective), self.n_workers,
                self.address, cpus_per_worker=1, gpus_per_worker=0)
        count = len(next(iter(offsets.values())))
        bounds = np.linspace(0, count, self.n_workers + 1).astype(int)
        shares = {worker: ("__call__", (center, {i: offset[start:stop]
                                                 for i, offset in offsets.items()}, samples))
                  for worker, (start, stop) in enumerate(itertools.pairwise(bounds))
                  if stop > start}
        # A share has no state to lose: a lost worker's share is simply evaluated again.
        values, _ = self._workers.call(shares, retry=True)
        return np.concatenate([values[worker] for worker in sorted(values)])

    def close(self):
        if self._workers is not None:
            self._workers.close()
            self._workers = None

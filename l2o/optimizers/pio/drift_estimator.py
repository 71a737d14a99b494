"""Training PIO's drift network from a config: ``train.py`` with ``constructor: PIO``.

PIO has no meta-training across tasks; what a run trains is its drift network,
by the Path Integral Sampler's objective on the one training problem's
Boltzmann target exp(-V / sigma) (see ``l2o.optimizers.pio.rule``). The drift
weights play the part of meta-weights, and ``DriftEstimator`` is their
``GradientEstimator``: the generic trainer, strategies, checkpoints, resume,
TensorBoard and ``evaluate.py`` treat them as any other. Each truncation is
one step of the config's ``optimizer`` on the objective (mean trajectory
loss / d, ``network/trajectories`` paths) against V on one batch of the
training stream, drawn from the truncation's generator; the strategy's unroll
length does not apply (``inner_steps_per_second`` counts these steps).

Validation samples paths against V on the first batch of stream ``seed``,
moves to the selected terminal point (``network/weights_from``) and reports V
there on the validation data as ``validation_meta_loss`` (what picks the best
checkpoint) and ``validation_final_loss``, and the objective as
``validation_pis_loss``. ``evaluate.py`` then runs ``PIOOptimizer``
warm-started from the trained drift (which goes on training online at every
step) against the baselines.
"""

import numpy as np
from keras import ops

from l2o import backend
from l2o.estimators.base import GradientEstimate, GradientEstimator
from l2o.streams import Stream, rng
from l2o.tree import all_finite, unflatten_like


def dimension_of(problem, seed):
    """The number of weights of ``problem``: the drift network's input size."""
    return int(sum(np.prod(p.shape) for p in problem.init(seed)))


class DriftEstimator(GradientEstimator):
    """Gradients of the PIS objective of ``rule``'s drift on ``problem``; no worker state."""

    def __init__(self, rule, problem, meta_variables, seed):
        self.problem = problem
        like = problem.init(seed)
        dimension = dimension_of(problem, seed)
        variables = list(meta_variables.values())
        sigma = rule.sigma
        scales = rule.scales(sigma)

        def energy_on(batch):
            return rule.energy_of(lambda weights: problem.loss(weights, batch), like, sigma)

        def drift_weights():
            return {k: ops.convert_to_tensor(v) for k, v in meta_variables.items()}

        def objective_and_grads(batch, seed):
            (value, _), grads = backend.value_and_grad(
                lambda _: (rule.objective(drift_weights(), energy_on(batch), dimension, seed,
                                          scales), None),
                variables)(None)
            return value, grads, all_finite([value, *grads])

        def validate_step(batch, validation, seed):
            energy = energy_on(batch)
            result = rule.sample(drift_weights(), energy, dimension, rule.trajectories, seed,
                                 scales)
            chosen = rule.select(result["samples"], result["energy"])
            return (ops.mean(result["loss"]) / dimension,
                    problem.loss(unflatten_like(chosen, like), validation))

        self._objective_and_grads = backend.compile_fn(objective_and_grads, variables=variables)
        self._validate_step = backend.compile_fn(validate_step, variables=variables)

    def _batch(self, seed, start):
        return tuple(ops.convert_to_tensor(b[0]) for b in self.problem.batches(seed, start, 1))

    def init_worker_state(self, seed):
        return seed

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None):
        batch = self._batch(worker_state, int(generator.integers(2 ** 20)))
        value, grads, usable = self._objective_and_grads(
            batch, backend.seed_from_numpy(generator))
        usable = bool(usable)
        return GradientEstimate(loss=float(value), grads=grads, usable=usable, steps=1,
                                restart=False), worker_state

    def validation_metrics(self, unroll, seed):
        batch = self._batch(seed, 0)
        held_out = self.problem.validation_batch()
        validation = batch if held_out is None else tuple(
            ops.convert_to_tensor(v) for v in held_out)
        objective, final = self._validate_step(
            batch, validation, backend.seed_from_numpy(rng(Stream.PIO_VALIDATION, seed)))
        return {"validation_meta_loss": float(final), "validation_final_loss": float(final),
                "validation_pis_loss": float(objective)}

    def worker_arrays(self, worker_state):
        return {}, {"seed": worker_state}

    def load_worker_state(self, arrays, info):
        return info["seed"]

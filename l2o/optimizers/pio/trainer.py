"""Training PIO's drift network from a config: ``train.py`` with ``constructor: PIO``.

PIO has no meta-training across tasks; what a run trains is its drift network,
by the Path Integral Sampler's objective on the one training problem's
Boltzmann target exp(-V / sigma) (see ``l2o.optimizers.pio.rule``). The drift
weights play the part of meta-weights: strategies, checkpoints, resume,
TensorBoard and ``evaluate.py`` treat them as such. Each strategy epoch runs
``training/depth`` steps of the config's ``optimizer`` on the objective (mean
trajectory loss / d, ``network/trajectories`` paths) against V on one batch of
the training stream (``inner_steps_per_second`` counts these steps).

Validation samples paths against V on the first batch of stream
``validation_seed + r`` (r < ``validation_repeat``), moves to the selected
terminal point (``network/weights_from``) and reports V there on the
validation data as ``validation_meta_loss`` (what picks the best checkpoint)
and ``validation_final_loss``, and the objective as ``validation_pis_loss``.
``evaluate.py`` then runs ``PIOOptimizer`` warm-started from the trained drift
(which goes on training online at every step) against the baselines.
"""

import copy

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from l2o import backend, checkpoints, problems
from l2o.optimizers.base import all_finite, unflatten_like
from l2o.optimizers.pio.rule import PIORule
from l2o.problems.base import rng

# numpy pads short seed keys with zeros, so (s, 1) would equal the training key (s, 1, 0, 0)
# of period 1, epoch 0, step 0: validation keys are five long and end in a non-zero tag.
VALIDATION = (0, 0, 0, 1)


class PIOTrainer:
    def __init__(self, config):
        self.config = config
        training = config["training"]
        self.rule = PIORule(**config["network"])
        self.problems = [problems.build(spec, f"problems/{index}")
                         for index, spec in enumerate(config["problems"])]
        problem = self.problems[0]
        like = problem.init(training["seed"])
        self.dimension = int(sum(np.prod(p.shape) for p in like))
        self.meta_variables = {
            name: keras.Variable(value, name=name.replace("/", "_"))
            for name, value in self.rule.init_meta_weights(training["seed"],
                                                           self.dimension).items()}
        variables = list(self.meta_variables.values())
        self.meta_optimizer = keras.optimizers.get(copy.deepcopy(config["optimizer"]))
        self.meta_optimizer.build(variables)
        sigma = self.rule.sigma
        scales = self.rule.scales(sigma)

        def energy_on(batch):
            return self.rule.energy_of(lambda weights: problem.loss(weights, batch), like, sigma)

        def drift_weights():
            return {k: ops.convert_to_tensor(v) for k, v in self.meta_variables.items()}

        def train_step(batch, seed):
            (value, _), grads = backend.value_and_grad(
                lambda _: (self.rule.objective(drift_weights(), energy_on(batch),
                                               self.dimension, seed, scales), None),
                variables)(None)
            usable = all_finite([value, *grads])
            if usable:
                self.meta_optimizer.apply(grads, variables)
            return value, usable

        def validate_step(batch, validation, seed):
            energy = energy_on(batch)
            result = self.rule.sample(drift_weights(), energy, self.dimension,
                                      self.rule.trajectories, seed, scales)
            chosen = self.rule.select(result["samples"], result["energy"])
            return (ops.mean(result["loss"]) / self.dimension,
                    problem.loss(unflatten_like(chosen, like), validation))

        self._train_step = backend.compile_fn(train_step)
        self._validate_step = backend.compile_fn(validate_step)

    @staticmethod
    def _seed(generator):
        return tf.constant(generator.integers(0, 2 ** 31, size=2), tf.int32)

    @staticmethod
    def _batch(problem, seed, start):
        return tuple(ops.convert_to_tensor(b[0]) for b in problem.batches(seed, start, 1))

    def train_epoch(self, period, epoch, sample_unroll, imitation_probability=0.0,
                    on_truncation=lambda **_: None):
        """``training/depth`` drift-training steps on batches drawn from the training stream."""
        seed = self.config["training"]["seed"]
        losses = {"meta_loss": [], "imitation_loss": []}
        for depth in range(self.config["training"]["depth"]):
            generator = rng(seed, period, epoch, depth)
            batch = self._batch(self.problems[0], seed, int(generator.integers(2 ** 20)))
            value, usable = self._train_step(batch, self._seed(generator))
            if bool(usable):
                losses["meta_loss"].append(float(value))
            on_truncation(meta_loss=float(value), steps=1)
        return losses

    def validate(self, unroll, seed, repeat):
        problem = self.problems[0]
        objectives, finals = [], []
        for offset in range(repeat):
            batch = self._batch(problem, seed + offset, 0)
            held_out = problem.validation_batch()
            validation = batch if held_out is None else tuple(
                ops.convert_to_tensor(v) for v in held_out)
            objective, final = self._validate_step(batch, validation,
                                                   self._seed(rng(seed + offset, *VALIDATION)))
            objectives.append(float(objective))
            finals.append(float(final))
        return {"validation_meta_loss": float(np.mean(finals)),
                "validation_final_loss": float(np.mean(finals)),
                "validation_pis_loss": float(np.mean(objectives))}

    def meta_weights(self):
        return {name: np.asarray(v.numpy()) for name, v in self.meta_variables.items()}

    def state_arrays(self):
        return {**checkpoints.variable_arrays("meta", self.meta_variables),
                **checkpoints.variable_arrays("meta_optimizer",
                                              self.meta_optimizer.variables)}, {}

    def load_state_arrays(self, arrays, info):
        checkpoints.assign_arrays("meta", self.meta_variables, arrays)
        checkpoints.assign_arrays("meta_optimizer", self.meta_optimizer.variables, arrays)

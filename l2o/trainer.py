"""Meta-training state and the work of one strategy epoch.

``MetaTrainer`` owns the meta-weights, the meta-optimiser, one gradient
estimator per problem (``l2o.estimators.base``) and the worker states that
live across epochs (``training/persistent``). The learned optimiser named by
``constructor`` declares its initial meta-weights and its estimators (see
``l2o.optimizers.base``); this module names none. Strategies decide how many
epochs to run, with which unroll lengths, and when to validate and
checkpoint.

Every random choice is drawn from a stream of ``l2o.streams`` keyed by (seed,
period, epoch, problem, slot, truncation), so a resumed run repeats exactly
what an uninterrupted one would have done.
"""

import copy
import functools
import itertools

import keras
import numpy as np

import l2o.optimizers  # noqa: F401  (registers the constructors)
from l2o import backend, checkpoints, distributed, problems
from l2o.estimators.particles import ParticleHost
from l2o.imitation import Teacher
from l2o.registry import OPTIMIZERS
from l2o.streams import Stream, rng, seed_from
from l2o.validation import ConfigError


def resolve_jit(setting):
    return backend.accelerator_available() if setting == "auto" else bool(setting)


class MetaTrainer:
    def __init__(self, config):
        self.config = config
        training = config["training"]
        optimizer_class = OPTIMIZERS.lookup("constructor", config["constructor"])
        self.problems = [problems.build(spec, f"problems/{index}")
                         for index, spec in enumerate(config["problems"])]
        # training/depth 0: each trajectory's truncations stop before they pass the end of
        # one pass over its problem's training data.
        self.steps_per_pass = [pass_steps(problem, f"problems/{index}")
                               for index, problem in enumerate(self.problems)] \
            if training["depth"] == 0 else None
        self.meta_variables = {
            name: keras.Variable(value, name=name.replace("/", "_"))
            for name, value in optimizer_class.initial_meta_weights(config, self.problems).items()}
        variables = list(self.meta_variables.values())
        self.meta_optimizer = keras.optimizers.get(copy.deepcopy(config["optimizer"]))
        self.meta_optimizer.build(variables)
        # Compiled: an eager Keras apply costs several milliseconds per truncation.
        self._apply = {"meta_loss": backend.compile_fn(
            lambda grads: self.meta_optimizer.apply(grads, variables))}
        self.imitation_optimizer = self.meta_optimizer
        if training["imitation_optimizer"] is not None:
            self.imitation_optimizer = keras.optimizers.get(
                copy.deepcopy(training["imitation_optimizer"]))
            self.imitation_optimizer.build(variables)
        self._apply["imitation_loss"] = self._apply["meta_loss"] \
            if self.imitation_optimizer is self.meta_optimizer else backend.compile_fn(
                lambda grads: self.imitation_optimizer.apply(grads, variables))
        self.teachers = [[Teacher(spec, problem) for spec in training["teachers"]]
                         for problem in self.problems]
        self.estimators = optimizer_class.gradient_estimators(
            config, self.problems, self.meta_variables, resolve_jit(training["jit_compile"]))
        # Worker states kept across epochs (training/persistent), by (problem, slot).
        self.workers = {}
        # distributed/workers > 0: Ray actors that run the particles (l2o/distributed.py).
        self.remote = None
        if config["distributed"]["workers"]:
            self.remote = distributed.Workers(
                functools.partial(ParticleHost, functools.partial(worker_estimators, config)),
                **config["distributed"])
            for key, estimator in distributable(self.estimators).items():
                estimator.place_on(self.remote, key)

    def train_epoch(self, period, epoch, sample_unroll, imitation_probability=0.0,
                    on_truncation=lambda **_: None):
        """One strategy epoch over every problem.

        ``sample_unroll(generator)`` draws each truncation's length (with
        ``training/depth`` 0, a trajectory's truncations go on while their
        lengths fit in one pass over the training data; at least one runs); with
        probability ``imitation_probability`` a truncation imitates a teacher
        (drawn uniformly) instead of lowering the meta-loss. A truncation is
        estimated ``training/repeat`` times from the same start, each usable
        estimate applied; a worker whose estimate asks for a restart starts a
        fresh inner run. ``on_truncation(meta_loss=..., steps=...)`` is called
        after each truncation. Returns ``{"meta_loss": [...],
        "imitation_loss": [...]}`` of the applied updates.
        """
        training, seed = self.config["training"], self.config["training"]["seed"]
        losses = {"meta_loss": [], "imitation_loss": []}
        for problem_index, estimator in enumerate(self.estimators):
            teachers = self.teachers[problem_index]
            for slot in range(training["epochs"]):
                keys = (seed, period, epoch, problem_index, slot)
                worker = self.workers.get((problem_index, slot)) if training["persistent"] \
                    else None
                if worker is None:
                    worker = estimator.init_worker_state(seed_from(rng(Stream.TRAJECTORY, *keys)))
                for depth, generator, length in self._truncations(problem_index, keys,
                                                                  sample_unroll):
                    teacher = teachers[int(generator.integers(len(teachers)))] \
                        if generator.uniform() < imitation_probability else None
                    for _ in range(training["repeat"]):
                        estimate, advanced = estimator.compute_gradient_estimate(
                            worker, generator, length, teacher)
                        if estimate.usable:
                            self._apply[estimate.kind](estimate.grads)
                            losses[estimate.kind].append(estimate.loss)
                    on_truncation(meta_loss=estimate.loss, steps=estimate.steps)
                    worker = estimator.init_worker_state(seed_from(
                        rng(Stream.RESTART, *keys, depth))) if estimate.restart else advanced
                if training["persistent"]:
                    self.workers[(problem_index, slot)] = worker
        return losses

    def _truncations(self, problem_index, keys, sample_unroll):
        """``(depth, generator, length)`` of each truncation of one trajectory in one epoch."""
        taken, truncations = 0, self.config["training"]["depth"]
        for depth in itertools.count():
            if depth == truncations and truncations:
                return
            generator = rng(Stream.TRUNCATION, *keys, depth)
            length = sample_unroll(generator)
            if self.steps_per_pass and depth and \
                    taken + length > self.steps_per_pass[problem_index]:
                return
            taken += length
            yield depth, generator, length

    def close(self):
        """Stops the distributed workers, if any."""
        if self.remote is not None:
            self.remote.close()

    def worker_restarts(self):
        """How many times distributed workers were lost and restarted (None: no workers)."""
        return None if self.remote is None else self.remote.restarts

    def validate(self, unroll, seed, repeat):
        """Each estimator's validation metrics, averaged over problems and ``repeat`` seeds."""
        results = [estimator.validate(unroll, seed + offset)
                   for estimator in self.estimators for offset in range(repeat)]
        return {key: float(np.mean([r[key] for r in results])) for key in results[0]}

    # ------------------------------------------------------------------ checkpoints

    def meta_weights(self):
        return {name: np.asarray(v.numpy()) for name, v in self.meta_variables.items()}

    def state_arrays(self):
        """Everything a resumed run needs, as named numpy arrays, plus JSON info."""
        arrays = {**checkpoints.variable_arrays("meta", self.meta_variables),
                  **checkpoints.variable_arrays("meta_optimizer", self.meta_optimizer.variables)}
        if self.imitation_optimizer is not self.meta_optimizer:
            arrays.update(checkpoints.variable_arrays("imitation_optimizer",
                                                      self.imitation_optimizer.variables))
        workers = []
        for (problem_index, slot), worker in sorted(self.workers.items()):
            worker_arrays, info = self.estimators[problem_index].worker_arrays(worker)
            arrays.update({f"worker/{problem_index}_{slot}/{name}": value
                           for name, value in worker_arrays.items()})
            workers.append({"problem": problem_index, "slot": slot, **info})
        return arrays, {"workers": workers}

    def load_state_arrays(self, arrays, info):
        checkpoints.assign_arrays("meta", self.meta_variables, arrays)
        checkpoints.assign_arrays("meta_optimizer", self.meta_optimizer.variables, arrays)
        if self.imitation_optimizer is not self.meta_optimizer:
            checkpoints.assign_arrays("imitation_optimizer", self.imitation_optimizer.variables,
                                      arrays)
        self.workers = {}
        for entry in info["workers"]:
            entry = dict(entry)
            problem_index, slot = entry.pop("problem"), entry.pop("slot")
            prefix = f"worker/{problem_index}_{slot}/"
            self.workers[(problem_index, slot)] = self.estimators[problem_index]. \
                load_worker_state({name[len(prefix):]: value for name, value in arrays.items()
                                   if name.startswith(prefix)}, entry)


def pass_steps(problem, field):
    """Steps in one pass over ``problem``'s training data, the same for all its members."""
    steps = {member.steps_per_pass() for member in problem.members()}
    if None in steps:
        raise ConfigError(f"training/depth: 0 runs each trajectory for one pass over its training "
                          f"data, and {field} has none (fresh data every step); set "
                          f"training/depth to 1 or more")
    if len(steps) > 1:
        raise ConfigError(f"training/depth: 0 runs each trajectory for one pass over its training "
                          f"data, and the members of {field} take different numbers of steps "
                          f"for one ({', '.join(map(str, sorted(steps)))}); set training/depth "
                          f"to 1 or more")
    return steps.pop()


def distributable(estimators):
    """{key: estimator} of the estimators whose work can run on distributed workers."""
    return dict(part for index, estimator in enumerate(estimators)
                for part in estimator.distributable((index,)))


def worker_estimators(config):
    """What each distributed worker builds once: the run's estimators, in its own process."""
    local = copy.deepcopy(config)
    local["distributed"]["workers"] = 0
    return distributable(MetaTrainer(local).estimators)

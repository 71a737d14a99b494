"""Meta-training state and the work of one strategy epoch.

``MetaTrainer`` owns the meta-weights, the meta-optimiser, one gradient
estimator per problem (``l2o.estimators.base``) and the worker states that
live across epochs (``training/persistent``). The learned optimiser named by
``constructor`` declares its initial meta-weights and its estimators (see
``l2o.optimizers.base``); this module names none. Strategies decide how many
epochs to run, with which unroll lengths, and when to validate and
checkpoint.

Where the tasks' truncations run and their states live is a ``TaskRunner``
(``l2o.task_runners``): here, or with ``distributed/workers`` N > 0 and
estimators without distributable parts (TBPTT), on Ray workers that each
build the run (``local_tasks``) and keep their share of the trajectories;
each round of an averaged meta-batch the learner sends them the meta-weights
and their tasks' requests, and averages the gradients that come back as it
does its own. Estimators with distributable parts (ES/PES particles,
``l2o.estimators.particles``) keep their tasks here and place those parts on
the workers instead.

Every random choice is drawn from a stream of ``l2o.streams`` keyed by (seed,
period, epoch, problem, slot, truncation), so a resumed run repeats exactly
what an uninterrupted one would have done.
"""

import copy
import functools
import itertools

import keras
import numpy as np
from keras import ops

import l2o.optimizers  # noqa: F401  (registers the constructors)
from l2o import backend, checkpoints, distributed, problems
from l2o.estimators.particles import ParticleHost
from l2o.imitation import Teacher
from l2o.registry import OPTIMIZERS
from l2o.streams import Stream, rng, seed_from
from l2o.task_runners import DistributedTasks, LocalTasks, TruncationRequest
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
        self._apply = {"meta_loss": self._compiled_apply(self.meta_optimizer)}
        self.imitation_optimizer = self.meta_optimizer
        if training["imitation_optimizer"] is not None:
            self.imitation_optimizer = keras.optimizers.get(
                copy.deepcopy(training["imitation_optimizer"]))
            self.imitation_optimizer.build(variables)
        self._apply["imitation_loss"] = self._apply["meta_loss"] \
            if self.imitation_optimizer is self.meta_optimizer else \
            self._compiled_apply(self.imitation_optimizer)
        self.teachers = [[Teacher(spec, problem) for spec in training["teachers"]]
                         for problem in self.problems]
        self.estimators = optimizer_class.gradient_estimators(
            config, self.problems, self.meta_variables, resolve_jit(training["jit_compile"]))
        # The tasks of an epoch, (problem, slot): each problem's training/epochs trajectories.
        self.tasks = [(index, slot) for index in range(len(self.problems))
                      for slot in range(training["epochs"])]
        # distributed/workers > 0: Ray actors (l2o/distributed.py) that run the estimators'
        # distributable parts (ES/PES particles), or else whole tasks, each worker
        # keeping its share of the trajectories (training/meta_batch averaged).
        self.remote = None
        self.runner = LocalTasks(self.estimators, self.teachers, self.meta_variables)
        if config["distributed"]["workers"]:
            parts = distributable(self.estimators)
            target = functools.partial(ParticleHost, functools.partial(worker_estimators, config)) \
                if parts else functools.partial(local_tasks, config)
            self.remote = distributed.Workers(target, **config["distributed"])
            for key, estimator in parts.items():
                estimator.place_on(self.remote, key)
            if not parts:
                self.runner = DistributedTasks(self.remote, self.tasks, self.meta_weights)
        # Where each meta-update is one truncation's gradient, computed here, the estimators
        # that can run it in the same compiled call as the truncation (their problems here).
        self.fused = set()
        if isinstance(self.runner, LocalTasks) and \
                (training["meta_batch"] == "sequential" or len(self.tasks) == 1):
            update = functools.partial(guarded_update, self.meta_optimizer, variables)
            tracked = variables + list(self.meta_optimizer.variables)
            self.fused = {index for index, estimator in enumerate(self.estimators)
                          if estimator.fuse_meta_update(update, tracked)}

    def _compiled_apply(self, optimizer):
        """``grads -> None``: one step of ``optimizer`` (built) on the meta-weights."""
        variables = list(self.meta_variables.values())
        return backend.compile_fn(lambda grads: optimizer.apply(grads, variables),
                                  variables=variables + list(optimizer.variables))

    def train_epoch(self, period, epoch, sample_unroll, imitation_probability=0.0,
                    on_truncation=lambda **_: None):
        """One strategy epoch over every task: each problem's ``training/epochs`` trajectories.

        ``sample_unroll(generator)`` draws each truncation's length (with
        ``training/depth`` 0, a trajectory's truncations go on while their
        lengths fit in one pass over the training data; at least one runs); with
        probability ``imitation_probability`` a truncation imitates a teacher
        (drawn uniformly) instead of lowering the meta-loss. A truncation is
        estimated ``training/repeat`` times from the same start; a worker whose
        estimate asks for a restart starts a fresh inner run.
        ``training/meta_batch`` sequential: the tasks take turns, each usable
        estimate a meta-update; averaged: one truncation of every task at the
        same meta-weights (a task whose trajectory is over sits out), and the
        mean of their usable meta-gradients (per kind) is one meta-update.
        ``on_truncation(meta_loss=..., steps=...)`` is called after each task's
        truncation. Returns ``{"meta_loss": [...], "imitation_loss": [...]}``
        of the applied updates.
        """
        training, seed = self.config["training"], self.config["training"]["seed"]
        persistent, repeats = training["persistent"], training["repeat"]
        losses = {"meta_loss": [], "imitation_loss": []}
        # Tasks that start a fresh trajectory at their next truncation, with its seed.
        starts = {task: seed_from(rng(Stream.TRAJECTORY, seed, period, epoch, *task))
                  for task in self.tasks if not (persistent and task in self.runner.kept())}
        running = []
        for truncations in self._rounds(period, epoch, sample_unroll):
            if not persistent:
                self.runner.forget(set(running) - {task for task, *_ in truncations})
            running, requests = [task for task, *_ in truncations], []
            for task, depth, generator, length in truncations:
                teacher = int(generator.integers(len(self.teachers[task[0]]))) \
                    if generator.uniform() < imitation_probability else None
                restart = seed_from(rng(Stream.RESTART, seed, period, epoch, *task, depth))
                requests.append(TruncationRequest(task, None, generator, length, teacher,
                                                  restart, teacher is None and
                                                  task[0] in self.fused))
            for repeat in range(repeats):
                estimates = self.runner.truncate([
                    request._replace(start=starts.pop(request.task, None),
                                     restart=request.restart if repeat == repeats - 1 else None)
                    for request in requests])
                self._apply_mean(estimates, losses)
            for request, estimate in zip(requests, estimates):
                if estimate is None:  # lost with its distributed worker: start afresh
                    starts[request.task] = request.restart
                    on_truncation(meta_loss=float("nan"), steps=0)
                else:
                    on_truncation(meta_loss=estimate.loss, steps=estimate.steps)
        if not persistent:
            self.runner.forget(running)
        return losses

    def _rounds(self, period, epoch, sample_unroll):
        """Lists of ``(task, depth, generator, length)``: the truncations of one meta-batch
        (``training/meta_batch``), in turn."""
        seed = self.config["training"]["seed"]

        def truncations(task):
            for truncation in self._truncations(task[0], (seed, period, epoch, *task),
                                                sample_unroll):
                yield task, *truncation

        tasks = [truncations(task) for task in self.tasks]
        if self.config["training"]["meta_batch"] == "sequential":
            yield from ([truncation] for truncations in tasks for truncation in truncations)
            return
        while truncations := [truncation for truncation in (next(each, None) for each in tasks)
                              if truncation is not None]:
            yield truncations

    def _apply_mean(self, estimates, losses):
        """Applies the mean gradient of each kind's usable estimates (unless an estimator
        applied it already), noting its mean loss."""
        for kind, values in losses.items():
            usable = [e for e in estimates if e is not None and e.usable and e.kind == kind]
            if not usable:
                continue
            if not usable[0].applied:
                grads = [np.mean(np.stack(parts), axis=0)
                         for parts in zip(*(estimate.grads for estimate in usable))]
                self._apply[kind]([ops.convert_to_tensor(g, v.dtype) for g, v in
                                   zip(grads, self.meta_variables.values())])
            values.append(float(np.mean([estimate.loss for estimate in usable])))

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

    def validation_metrics(self, unroll, seed, repeat):
        """Each estimator's validation metrics, averaged over problems and ``repeat`` seeds."""
        results = [estimator.validation_metrics(unroll, seed + offset)
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
        tasks = []
        for (problem_index, slot), (task_arrays, info) in self.runner.entries().items():
            arrays.update({f"worker/{problem_index}_{slot}/{name}": value
                           for name, value in task_arrays.items()})
            tasks.append({"problem": problem_index, "slot": slot, **info})
        return arrays, {"workers": tasks}

    def load_state_arrays(self, arrays, info):
        checkpoints.assign_arrays("meta", self.meta_variables, arrays)
        checkpoints.assign_arrays("meta_optimizer", self.meta_optimizer.variables, arrays)
        if self.imitation_optimizer is not self.meta_optimizer:
            checkpoints.assign_arrays("imitation_optimizer", self.imitation_optimizer.variables,
                                      arrays)
        entries = {}
        # The file keeps its first names for the tasks' states: "workers", "worker/".
        for entry in info["workers"]:
            entry = dict(entry)
            task = entry.pop("problem"), entry.pop("slot")
            prefix = "worker/{}_{}/".format(*task)
            entries[task] = ({name[len(prefix):]: value for name, value in arrays.items()
                              if name.startswith(prefix)}, entry)
        self.runner.load_entries(entries)


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


def local_trainer(config):
    """The run of ``config`` in this process alone: what a distributed worker builds once."""
    local = copy.deepcopy(config)
    local["distributed"]["workers"] = 0
    return MetaTrainer(local)


def guarded_update(optimizer, variables, grads, usable):
    """One step of ``optimizer`` (built) on ``variables`` where ``usable`` (a boolean
    tensor) is true; otherwise they and the optimiser's state keep their values. Traceable:
    it selects rather than branches, which a compiled JAX function can do with variables."""
    tracked = list(variables) + list(optimizer.variables)
    # Copies: in a TensorFlow graph, a converted variable is read where it is used.
    before = [ops.copy(v.value) for v in tracked]
    optimizer.apply(grads, variables)
    for variable, old in zip(tracked, before):
        variable.assign(ops.where(usable, variable.value, old))


def local_tasks(config):
    """The run's tasks in this process, as a distributed worker keeps its share of them."""
    return local_trainer(config).runner


def worker_estimators(config):
    """The run's distributable estimators, as a distributed worker builds them."""
    return distributable(local_trainer(config).estimators)

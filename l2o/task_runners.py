"""Where a meta-training run's tasks run: here, or on distributed workers that keep them.

A *task* is one trajectory slot of one problem, ``(problem index, slot)``;
its *state* is what its estimator keeps between truncations (a trajectory in
progress, a particle population). ``MetaTrainer`` schedules truncations and
applies meta-updates; a ``TaskRunner`` runs a meta-batch of truncations at
the same meta-weights, keeps the tasks' states and gathers them for a
checkpoint:

    estimates = runner.truncate(requests, meta_weights)   # one per request
    runner.forget(tasks); runner.kept()                    # states kept across epochs
    entries = runner.entries(); runner.load_entries(entries)   # checkpoints

``LocalTasks`` keeps them in this process; ``DistributedTasks`` spreads them
over ``l2o.distributed.Workers``, each worker holding a ``LocalTasks`` of its
own (task k of the run on worker k mod N), and gathers their states from
there. The two give the same estimates for the same requests.
"""

from __future__ import annotations

import abc
import typing

import numpy as np
from keras import ops

from l2o.estimators.base import GradientEstimate


class TruncationRequest(typing.NamedTuple):
    """One task's truncation, as a ``TaskRunner`` runs it."""

    task: tuple  # (problem index, slot)
    start: int | None  # a seed: begin a fresh state first; None: go on
    generator: np.random.Generator  # the truncation's stream (imitation draws, particles)
    length: int  # inner steps
    teacher: int | None  # index into the problem's teachers; None: the meta-loss
    # A seed, on the truncation's last repeat: settles the task's state (a fresh one from
    # it if the estimate asks for a restart, else the advanced one); None (an earlier
    # repeat): the state stays where the truncation began, for the next repeat.
    restart: int | None
    # The estimator applies the meta-update itself, in the truncation's compiled call
    # (``GradientEstimator.fuse_meta_update``).
    update: bool = False


# A task's state as a checkpoint holds it: named arrays and JSON info (the estimator's
# ``worker_arrays``).
Entry = tuple[dict[str, np.ndarray], dict]


class TaskRunner(abc.ABC):
    """Runs truncations of tasks and keeps their states; see the module docstring."""

    @abc.abstractmethod
    def truncate(self, requests: list[TruncationRequest],
                 meta_weights: dict[str, np.ndarray] | None = None
                 ) -> list[GradientEstimate | None]:
        """One truncation of each request at ``meta_weights`` (None: as they are), its
        gradients as numpy arrays; None for a task whose state was lost (its worker was
        restarted), which the trainer then starts afresh."""

    @abc.abstractmethod
    def kept(self) -> set[tuple]:
        """The tasks with a state."""

    @abc.abstractmethod
    def forget(self, tasks: typing.Iterable[tuple]) -> None:
        """Drops the states of ``tasks``."""

    @abc.abstractmethod
    def entries(self) -> dict[tuple, Entry]:
        """{task: entry} of every task with a state, in task order."""

    @abc.abstractmethod
    def load_entries(self, entries: dict[tuple, Entry]) -> None:
        """Keeps the states of ``entries``, and only those."""


class LocalTasks(TaskRunner):
    """Tasks run in this process by ``estimators`` (one per problem), reading the
    meta-weights from ``meta_variables``; ``teachers[problem]`` are the problem's teachers
    for imitation truncations."""

    def __init__(self, estimators, teachers, meta_variables):
        self.estimators, self.teachers = estimators, teachers
        self.meta_variables = meta_variables
        self.states = {}

    def truncate(self, requests, meta_weights=None):
        for name, value in (meta_weights or {}).items():
            self.meta_variables[name].assign(value)
        estimates = []
        for request in requests:
            task = request.task
            estimator = self.estimators[task[0]]
            if request.start is not None:
                self.states[task] = estimator.init_worker_state(request.start)
            if task not in self.states:
                estimates.append(None)
                continue
            estimate, advanced = estimator.compute_gradient_estimate(
                self.states[task], request.generator, request.length,
                None if request.teacher is None else self.teachers[task[0]][request.teacher],
                **({"update": True} if request.update else {}))
            if request.restart is not None:
                self.states[task] = estimator.init_worker_state(request.restart) \
                    if estimate.restart else advanced
            estimates.append(estimate._replace(
                grads=[np.asarray(ops.convert_to_numpy(g)) for g in estimate.grads]))
        return estimates

    def kept(self):
        return set(self.states)

    def forget(self, tasks):
        for task in tasks:
            self.states.pop(task, None)

    def entries(self, tasks=None):
        """{task: entry} of the states of ``tasks`` (default: all) kept here, in task order
        (a restarted distributed worker has lost its own)."""
        tasks = sorted(self.states if tasks is None else tasks)
        return {task: self.estimators[task[0]].worker_arrays(self.states[task])
                for task in tasks if task in self.states}

    def load_entries(self, entries):
        self.states = {task: self.estimators[task[0]].load_worker_state(arrays, info)
                       for task, (arrays, info) in entries.items()}


class DistributedTasks(TaskRunner):
    """The run's ``tasks`` on ``workers`` (``l2o.distributed.Workers`` whose targets are
    ``LocalTasks``), task k on worker k mod N; ``meta_weights()`` gives the learner's
    meta-weights, which every truncation sends along."""

    def __init__(self, workers, tasks, meta_weights):
        self.workers, self.tasks, self.meta_weights = workers, list(tasks), meta_weights
        self.hosts = {}  # task -> the worker keeping its state

    def _shares(self, tasks):
        """{worker: the ``tasks`` it keeps}."""
        shares = {}
        for task in tasks:
            shares.setdefault(self.tasks.index(task) % self.workers.count, []).append(task)
        return shares

    def truncate(self, requests, meta_weights=None):
        shares = self._shares(request.task for request in requests)
        by_task = {request.task: request for request in requests}
        meta_weights = self.meta_weights() if meta_weights is None else meta_weights
        results, _ = self.workers.call({
            index: ("truncate", ([by_task[task] for task in tasks], meta_weights))
            for index, tasks in shares.items()})
        estimates = {}
        for index, tasks in shares.items():
            estimates.update(zip(tasks, results.get(index) or [None] * len(tasks)))
            self.hosts.update(dict.fromkeys(tasks, index))
        return [estimates[request.task] for request in requests]

    def kept(self):
        return set(self.hosts)

    def forget(self, tasks):
        for task in tasks:
            self.hosts.pop(task, None)

    def entries(self):
        results, _ = self.workers.call({index: ("entries", (tasks,)) for index, tasks
                                        in self._shares(sorted(self.hosts)).items()},
                                       retry=True)
        return dict(sorted(item for entries in results.values() for item in entries.items()))

    def load_entries(self, entries):
        # Every worker hears, so that none keeps states of before.
        self.workers.call({index: ("load_entries", ({task: entries[task] for task in tasks
                                                     if task in entries},))
                           for index, tasks in self._shares(self.tasks).items()}, retry=True)
        self.hosts = {task: index for index, tasks in self._shares(entries).items()
                      for task in tasks}

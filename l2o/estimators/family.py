"""The estimator of a task family: one estimator per member, a member per trajectory.

A worker state is a ``FamilyWorker``: the member that ``problem.member_of``
drew for the worker's seed, and that member's own worker state. Everything
else is delegated to the member's estimator; validation at ``seed`` runs on
the member of ``seed``, and checkpoints record the member index in the
worker's info, so a resumed run rebuilds each worker on its task.
"""

from typing import Any, NamedTuple

import keras

from l2o.estimators.base import GradientEstimator
from l2o.imitation import Teacher


class FamilyWorker(NamedTuple):
    member: int
    state: Any


class FamilyEstimator(GradientEstimator):
    """``estimators[k]`` serves ``problem.members()[k]``."""

    def __init__(self, problem, estimators):
        self.problem, self.estimators = problem, estimators
        self._teachers = {}

    def init_worker_state(self, seed):
        member = self.problem.member_of(seed)
        return FamilyWorker(member, self.estimators[member].init_worker_state(seed))

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None,
                                  update=False):
        member = worker_state.member
        if teacher is not None:
            teacher = self._member_teacher(teacher, member)
        estimate, state = self.estimators[member].compute_gradient_estimate(
            worker_state.state, generator, length, teacher, **({"update": True} if update else {}))
        return estimate, worker_state._replace(state=state)

    def _member_teacher(self, teacher, member):
        """The family's teacher optimiser, rebuilt for the member's parameters (once)."""
        key = (id(teacher), member)
        if key not in self._teachers:
            self._teachers[key] = Teacher(keras.optimizers.serialize(teacher.optimizer),
                                          self.problem.members()[member])
        return self._teachers[key]

    def validation_metrics(self, unroll, seed):
        return self.estimators[self.problem.member_of(seed)].validation_metrics(unroll, seed)

    def worker_arrays(self, worker_state):
        arrays, info = self.estimators[worker_state.member].worker_arrays(worker_state.state)
        return arrays, {**info, "member": worker_state.member}

    def fuse_meta_update(self, update, variables):
        # Every member is offered it, whatever the others answer.
        answers = [estimator.fuse_meta_update(update, variables) for estimator in self.estimators]
        return all(answers)

    def distributable(self, key):
        return [part for member, estimator in enumerate(self.estimators)
                for part in estimator.distributable(key + (member,))]

    def load_worker_state(self, arrays, info):
        info = dict(info)
        member = info.pop("member")
        return FamilyWorker(member, self.estimators[member].load_worker_state(arrays, info))

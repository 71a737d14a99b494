"""Task families: one config problem standing for a distribution of tasks.

Each trajectory of meta-training trains on one member task, drawn from
``weights`` by the stream ``TASK_SAMPLE`` at the trajectory's seed, so the
draw is a function of (run seed, trajectory) alone: a resumed run, and a
validation or evaluation at a given seed, meet the same task. Members are
ordinary problem entries (``{target, args, kwargs}``), so a family declares
architectures, activations, data sets, image sizes, batch sizes, conditioning
and loss scales through the members' own keyword arguments. Each member is
compiled on its own, once; keep families to a handful or a few dozen tasks.
"""

import numpy as np

from l2o.problems.base import Problem, offered
from l2o.problems.datasets import DataError
from l2o.registry import PROBLEMS
from l2o.streams import Stream, rng
from l2o.validation import ConfigError, check_spec, fill_spec


@PROBLEMS.register("task_family")
class TaskFamily(Problem):
    """``members``: problem entries; ``weights``: their sampling probabilities (null:
    uniform; normalised); ``member`` k: this family is its k-th member alone
    (evaluation and validation on one task of a training family).

    ``init(seed)`` and ``batches(seed, ...)`` are those of the member of run
    ``seed``; a loss needs a member (``members()``), as it has no seed.
    """

    def __init__(self, members=(), weights=None, member=None):
        self._members = []
        for index, spec in enumerate(members):
            try:
                self._members.append(PROBLEMS[spec["target"]](*spec.get("args", ()),
                                                              **spec.get("kwargs", {})))
            except DataError as error:
                raise DataError(f"members/{index}/kwargs/{error}") from None
        self.member = member
        weights = np.ones(len(self._members)) if weights is None else np.asarray(weights, float)
        self.weights = weights / weights.sum()

    @classmethod
    def validate_config(cls, prefix, kwargs):
        members = kwargs["members"]
        if not members:
            raise ConfigError(f"{prefix}members: must be a non-empty list of problems")
        for index, spec in enumerate(members):
            name = f"{prefix}members/{index}"
            fill_spec(name, spec, PROBLEMS)
            if spec["target"] == "task_family":
                raise ConfigError(f"{name}/target: a member is one task, not a task_family; "
                                  f"list its members here instead")
            check_spec(name, spec, PROBLEMS)
        weights = kwargs["weights"]
        if weights is not None and (
                not isinstance(weights, list) or len(weights) != len(members)
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                           and 0 <= w < float("inf") for w in weights)
                or not sum(weights) > 0):
            raise ConfigError(f"{prefix}weights: must be null or {len(members)} non-negative "
                              f"numbers (one per member), not all zero; got {weights!r}")
        member = kwargs["member"]
        if member is not None and (isinstance(member, bool) or not isinstance(member, int)
                                   or not 0 <= member < len(members)):
            raise ConfigError(f"{prefix}member: must be null or a member's index, 0 to "
                              f"{len(members) - 1}; got {member!r}")

    @classmethod
    def offers(cls, kwargs):
        """What every member that may train offers (see ``offered``)."""
        members = kwargs["members"] if kwargs["member"] is None else [
            kwargs["members"][kwargs["member"]]]
        return frozenset.intersection(*(offered(PROBLEMS[spec["target"]], spec["kwargs"])
                                        for spec in members))

    def members(self):
        return self._members if self.member is None else [self._members[self.member]]

    def member_of(self, seed):
        if self.member is not None:
            return 0
        return int(rng(Stream.TASK_SAMPLE, seed).choice(len(self._members), p=self.weights))

    def _task(self, seed):
        return self.members()[self.member_of(seed)]

    def init(self, seed):
        return self._task(seed).init(seed)

    def batches(self, seed, start, count):
        return self._task(seed).batches(seed, start, count)

"""Learned optimisers: pure update rules and their Keras optimiser façades."""

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.dm import DMOptimizer, DMRule

# ``constructor`` in a config names one of these.
CONSTRUCTORS = {"DM": DMOptimizer}

__all__ = ["CONSTRUCTORS", "DMOptimizer", "DMRule", "LearnedOptimizer", "UpdateRule"]

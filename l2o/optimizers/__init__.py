"""Learned optimisers: pure update rules and their Keras optimiser façades.

Importing this package registers every constructor in ``OPTIMIZERS``
(``constructor`` in a config names one).
"""

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.controlled_adam import ControlledAdamOptimizer, ControlledAdamRule
from l2o.optimizers.dm import DMOptimizer, DMRule
from l2o.optimizers.normalized_mlp import NormalizedMLPOptimizer, NormalizedMLPRule
from l2o.optimizers.pio import PIOOptimizer, PIORule
from l2o.optimizers.rnnprop import RNNPropOptimizer, RNNPropRule
from l2o.optimizers.scale import (
    ScaleBasicOptimizer,
    ScaleBasicRule,
    ScaleHierarchicalOptimizer,
    ScaleHierarchicalRule,
)
from l2o.optimizers.scheduled_sgd import ScheduledSGD, ScheduledSGDRule
from l2o.registry import OPTIMIZERS

__all__ = ["OPTIMIZERS", "ControlledAdamOptimizer", "ControlledAdamRule", "DMOptimizer", "DMRule", "LearnedOptimizer", "NormalizedMLPOptimizer",
           "NormalizedMLPRule", "PIOOptimizer", "PIORule",
           "RNNPropOptimizer", "RNNPropRule", "ScaleBasicOptimizer", "ScaleBasicRule",
           "ScaleHierarchicalOptimizer", "ScaleHierarchicalRule", "ScheduledSGD",
           "ScheduledSGDRule", "UpdateRule"]

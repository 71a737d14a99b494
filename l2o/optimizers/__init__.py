"""Learned optimisers: pure update rules and their Keras optimiser façades."""

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.dm import DMOptimizer, DMRule
from l2o.optimizers.hyper import ScheduledSGD, ScheduledSGDRule
from l2o.optimizers.rnnprop import RNNPropOptimizer, RNNPropRule
from l2o.optimizers.scale import (
                                  ScaleBasicOptimizer,
                                  ScaleBasicRule,
                                  ScaleHierarchicalOptimizer,
                                  ScaleHierarchicalRule,
)

# ``constructor`` in a config names one of these.
CONSTRUCTORS = {"DM": DMOptimizer, "RNNProp": RNNPropOptimizer,
                "ScaleBasic": ScaleBasicOptimizer, "ScaleHierarchical": ScaleHierarchicalOptimizer,
                "ScheduledSGD": ScheduledSGD}

__all__ = ["CONSTRUCTORS", "DMOptimizer", "DMRule", "LearnedOptimizer", "RNNPropOptimizer",
           "RNNPropRule", "ScaleBasicOptimizer", "ScaleBasicRule", "ScaleHierarchicalOptimizer",
           "ScaleHierarchicalRule", "ScheduledSGD", "ScheduledSGDRule", "UpdateRule"]

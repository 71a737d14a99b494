"""Learned optimisers: pure update rules and their Keras optimiser façades."""

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.dm import DMOptimizer, DMRule
from l2o.optimizers.hyper import ScheduledSGD, ScheduledSGDRule
from l2o.optimizers.pio import PIOOptimizer, PIORule
from l2o.optimizers.rnnprop import RNNPropOptimizer, RNNPropRule
from l2o.optimizers.scale import (
                                  ScaleBasicOptimizer,
                                  ScaleBasicRule,
                                  ScaleHierarchicalOptimizer,
                                  ScaleHierarchicalRule,
)

# Optimisers built on an ``UpdateRule``: meta-trained by ``l2o.trainer.MetaTrainer``.
RULE_CONSTRUCTORS = {"DM": DMOptimizer, "RNNProp": RNNPropOptimizer,
                     "ScaleBasic": ScaleBasicOptimizer,
                     "ScaleHierarchical": ScaleHierarchicalOptimizer,
                     "ScheduledSGD": ScheduledSGD}
# ``constructor`` in a config names one of these; PIO trains with ``l2o.pio_trainer``.
CONSTRUCTORS = {**RULE_CONSTRUCTORS, "PIO": PIOOptimizer}

__all__ = ["CONSTRUCTORS", "RULE_CONSTRUCTORS", "DMOptimizer", "DMRule", "LearnedOptimizer",
           "PIOOptimizer", "PIORule", "RNNPropOptimizer",
           "RNNPropRule", "ScaleBasicOptimizer", "ScaleBasicRule", "ScaleHierarchicalOptimizer",
           "ScaleHierarchicalRule", "ScheduledSGD", "ScheduledSGDRule", "UpdateRule"]

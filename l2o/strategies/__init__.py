"""Meta-training strategies: the schedule of epochs, unroll lengths and validation."""

from l2o.strategies.base import Strategy
from l2o.strategies.curriculum import CurriculumStrategy
from l2o.strategies.simple import SimpleStrategy

# ``strategy_constructor`` in a config names one of these.
STRATEGIES = {"Simple": SimpleStrategy, "Curriculum": CurriculumStrategy}

__all__ = ["STRATEGIES", "CurriculumStrategy", "SimpleStrategy", "Strategy"]

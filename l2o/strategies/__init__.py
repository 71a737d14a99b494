"""Meta-training strategies: the schedule of epochs, unroll lengths and validation.

Importing this package registers every strategy in ``STRATEGIES`` (a config's
``strategy_constructor`` names one).
"""

from l2o.registry import STRATEGIES
from l2o.strategies.base import Strategy
from l2o.strategies.curriculum import CurriculumStrategy
from l2o.strategies.simple import SimpleStrategy

__all__ = ["STRATEGIES", "CurriculumStrategy", "SimpleStrategy", "Strategy"]

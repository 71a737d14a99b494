"""Meta-gradient estimators: how a truncation of inner training becomes a meta-gradient.

``TBPTT`` differentiates through a truncation of a learned optimiser's unroll;
``TruncatedES`` and ``PES`` estimate meta-gradients from perturbed, vectorised
truncations (so far of small-state problems such as ``l2o.problems.influence``).
"""

from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.tbptt import TBPTT

__all__ = ["PES", "TBPTT", "TruncatedES"]

"""Meta-gradient estimators: how a truncation of inner training becomes a meta-gradient."""

from l2o.estimators.tbptt import TBPTT

__all__ = ["TBPTT"]

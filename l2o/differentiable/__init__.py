"""Differentiable optimisers and meta-learning schedules (MAML, online meta-gradients).

    from l2o import differentiable
    opt = differentiable.adam(learning_rate=1e-3, eps_root=1e-8)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = differentiable.apply_updates(params, updates)

See ``optimizers`` for the equations and ``meta`` for the two schedules.
"""

from l2o.differentiable.meta import OfflineMetaLearner, OnlineMetaLearner, inner_loop
from l2o.differentiable.optimizers import (
    DifferentiableOptimizer,
    adagrad,
    adam,
    apply_updates,
    rmsprop,
    sgd,
)

__all__ = ["DifferentiableOptimizer", "OfflineMetaLearner", "OnlineMetaLearner", "adagrad",
           "adam", "apply_updates", "inner_loop", "rmsprop", "sgd"]

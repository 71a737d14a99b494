"""Differentiable optimisers and meta-learning schedules (MAML, online meta-gradients).

    from l2o import differentiable
    opt = differentiable.adam(learning_rate=1e-3, eps_root=1e-8)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = differentiable.apply_updates(params, updates)

See ``optimizers`` for the equations and ``meta`` for the two schedules;
``model`` runs them on unmodified Keras models (Meta-Optim's interface)::

    net = differentiable.MetaModel(model)
    inner = differentiable.MetaSGD(net, learning_rate=learning_rate_variable)
    with differentiable.SlidingWindow(offline=True) as window:
        inner.step(loss(y, net(x)))
        outer = loss(y_query, net(x_query))
    grads = window.gradient(outer, [learning_rate_variable])
"""

from l2o.differentiable.meta import OfflineMetaLearner, OnlineMetaLearner, inner_loop
from l2o.differentiable.model import (
    MetaAdagrad,
    MetaAdam,
    MetaModel,
    MetaOptimizer,
    MetaRMSprop,
    MetaSGD,
    SlidingWindow,
    model_loss,
)
from l2o.differentiable.optimizers import (
    DifferentiableOptimizer,
    adagrad,
    adam,
    apply_updates,
    rmsprop,
    sgd,
)

__all__ = ["DifferentiableOptimizer", "MetaAdagrad", "MetaAdam", "MetaModel", "MetaOptimizer",
           "MetaRMSprop", "MetaSGD", "OfflineMetaLearner", "OnlineMetaLearner", "SlidingWindow",
           "adagrad", "adam", "apply_updates", "inner_loop", "model_loss", "rmsprop", "sgd"]

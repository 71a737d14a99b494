"""Keras's SGD, Adam, RMSprop and Adagrad as pure, differentiable ``init``/``update`` pairs.

Each constructor returns a ``DifferentiableOptimizer`` in the manner of optax::

    opt = adam(learning_rate=1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)          # params + updates

``params``, ``grads`` and ``updates`` share one nested structure (a list, a
dict, ...) of tensors. Nothing is assigned, so a loss computed from the new
parameters can be differentiated, through any number of steps, with respect
to the initial parameters and to the hyperparameters. The equations (in each
docstring) are those of the Keras optimiser of the same name, operation for
operation, so both follow the same trajectory.

A hyperparameter is a Python number, a tensor, a variable (Keras or
TensorFlow), or a callable with no arguments returning one of these. A
callable is called once per ``update``, so a tape sees how its value is
computed: ``learning_rate=lambda: ops.exp(log_lr)`` has gradients with respect
to the variable ``log_lr``. A tensor computed before the tape started is a
constant to that tape. Values are cast to each parameter's dtype; Python
numbers are range-checked when the optimiser is built.
"""

import numbers
from collections.abc import Callable
from typing import NamedTuple

from keras import ops, tree

from l2o.numerics import safe_sqrt


class DifferentiableOptimizer(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params=None) -> (updates, state)``.

    ``params`` is accepted by ``update`` for optax's signature; none of the
    optimisers here reads it.
    """

    init: Callable
    update: Callable


def apply_updates(params, updates):
    return tree.map_structure(lambda p, u: p + u, params, updates)


def _check(name, value, valid, expected):
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a number, tensor, variable or callable, got {value!r}")
    if isinstance(value, numbers.Real) and not valid(value):
        raise ValueError(f"{name}: must be {expected}, got {value!r}")


def _check_non_negative(name, value):
    _check(name, value, lambda v: v >= 0, "non-negative")


def _check_decay(name, value):
    _check(name, value, lambda v: 0 <= v < 1, "in [0, 1)")


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")


def _evaluate(hyperparameter):
    return hyperparameter() if callable(hyperparameter) else hyperparameter


def _cast(value, dtype):
    # Python numbers stay Python numbers, so that ``1 - beta`` is rounded once,
    # in double precision, exactly as Keras computes it.
    return value if isinstance(value, numbers.Real) else ops.cast(value, dtype)


def _is_zero(hyperparameter):
    """Keras drops the momentum buffer only for a momentum that is the number 0."""
    return isinstance(hyperparameter, numbers.Real) and hyperparameter == 0


def _zeros_like(params):
    return tree.map_structure(ops.zeros_like, params)


def sgd(learning_rate=0.01, momentum=0.0, nesterov=False):
    """Stochastic gradient descent, optionally with momentum (``keras.optimizers.SGD``).

    With learning rate lr, momentum mu and gradient g_t at step t = 1, 2, ...:

        momentum 0:       update_t = -lr g_t
        momentum mu:      m_t = mu m_{t-1} - lr g_t,    m_0 = 0
                          update_t = m_t                (classical)
                          update_t = mu m_t - lr g_t    (``nesterov``)

    lr sits inside the buffer m, as in Keras: a learning rate that changes
    between steps does not rescale what m has accumulated. A momentum that is
    a tensor or variable always keeps the buffer (mu = 0 then is plain SGD).
    State: ``{"momentum": m}``, or ``{}`` without momentum.
    """
    _check_non_negative("learning_rate", learning_rate)
    _check("momentum", momentum, lambda v: 0 <= v <= 1, "in [0, 1]")
    _check_flag("nesterov", nesterov)
    uses_momentum = not _is_zero(momentum)

    def init(params):
        return {"momentum": _zeros_like(params)} if uses_momentum else {}

    def update(grads, state, params=None):
        lr, mu = _evaluate(learning_rate), _evaluate(momentum)
        if not uses_momentum:
            return tree.map_structure(lambda g: -(g * _cast(lr, g.dtype)), grads), state

        def step(m, g):
            return m * _cast(mu, g.dtype) - g * _cast(lr, g.dtype)

        velocity = tree.map_structure(step, state["momentum"], grads)
        updates = tree.map_structure(step, velocity, grads) if nesterov else velocity
        return updates, {"momentum": velocity}

    return DifferentiableOptimizer(init, update)


def adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, eps_root=0.0,
         amsgrad=False):
    """Adam (``keras.optimizers.Adam``), with optax's ``eps_root`` inside the square root.

    With gradient g_t at step t = 1, 2, ... and m_0 = v_0 = 0:

        m_t = m_{t-1} + (g_t - m_{t-1}) (1 - beta_1)
        v_t = v_{t-1} + (g_t^2 - v_{t-1}) (1 - beta_2)
        v'_t = max(v'_{t-1}, v_t) with ``amsgrad`` (v'_0 = 0), else v'_t = v_t
        alpha_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
        update_t = -alpha_t m_t / (sqrt(v'_t + eps_root) + epsilon)

    This is Keras's form: the bias corrections fold into the step size, so
    ``epsilon`` is added to the uncorrected sqrt(v), the paper's "epsilon hat".
    With ``eps_root`` = 0 it is Keras's Adam exactly. The derivative of sqrt(v)
    is infinite at v = 0, so differentiating through a step where a gradient
    coordinate is exactly zero (a dead ReLU, an unused parameter) gives NaN
    unless ``eps_root`` > 0 (optax suggests 1e-8 for meta-learning).
    State: ``{"count": t, "momentum": m, "velocity": v}``, plus
    ``"velocity_hat": v'`` with ``amsgrad``.
    """
    _check_non_negative("learning_rate", learning_rate)
    _check_decay("beta_1", beta_1)
    _check_decay("beta_2", beta_2)
    _check_non_negative("epsilon", epsilon)
    _check_non_negative("eps_root", eps_root)
    _check_flag("amsgrad", amsgrad)

    def init(params):
        state = {"count": ops.zeros((), "int32"), "momentum": _zeros_like(params),
                 "velocity": _zeros_like(params)}
        if amsgrad:
            state["velocity_hat"] = _zeros_like(params)
        return state

    def update(grads, state, params=None):
        lr, b1, b2 = _evaluate(learning_rate), _evaluate(beta_1), _evaluate(beta_2)
        eps, eps_r = _evaluate(epsilon), _evaluate(eps_root)
        count = state["count"] + 1
        momentum = tree.map_structure(
            lambda m, g: m + (g - m) * (1 - _cast(b1, g.dtype)), state["momentum"], grads)
        velocity = tree.map_structure(
            lambda v, g: v + (ops.square(g) - v) * (1 - _cast(b2, g.dtype)),
            state["velocity"], grads)
        new_state = {"count": count, "momentum": momentum, "velocity": velocity}
        if amsgrad:
            velocity = tree.map_structure(ops.maximum, state["velocity_hat"], velocity)
            new_state["velocity_hat"] = velocity

        def step(m, v):
            t = ops.cast(count, m.dtype)
            alpha = (_cast(lr, m.dtype) * ops.sqrt(1 - ops.power(ops.cast(b2, m.dtype), t))
                     / (1 - ops.power(ops.cast(b1, m.dtype), t)))
            return -(m * alpha) / (safe_sqrt(v + _cast(eps_r, m.dtype)) + _cast(eps, m.dtype))

        return tree.map_structure(step, momentum, velocity), new_state

    return DifferentiableOptimizer(init, update)


def rmsprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    """RMSprop (``keras.optimizers.RMSprop``), optionally centred and with momentum.

    With gradient g_t at step t = 1, 2, ... and v_0 = a_0 = mom_0 = 0:

        v_t = rho v_{t-1} + (1 - rho) g_t^2
        a_t = rho a_{t-1} + (1 - rho) g_t                 (``centered`` only)
        d_t = v_t - a_t^2 + epsilon   (``centered``),  else  v_t + epsilon
        step_t = lr g_t / sqrt(d_t)
        mom_t = mu mom_{t-1} + step_t,  update_t = -mom_t  (momentum mu)
        update_t = -step_t                                  (momentum 0)

    Unlike Adam, ``epsilon`` is inside the square root. As with SGD, a
    momentum that is a tensor or variable always keeps its buffer. State:
    ``{"velocity": v}`` plus ``"momentum": mom`` and ``"average_gradient": a``
    when used.
    """
    _check_non_negative("learning_rate", learning_rate)
    _check_decay("rho", rho)
    _check("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    _check_non_negative("epsilon", epsilon)
    _check_flag("centered", centered)
    uses_momentum = not _is_zero(momentum)

    def init(params):
        state = {"velocity": _zeros_like(params)}
        if uses_momentum:
            state["momentum"] = _zeros_like(params)
        if centered:
            state["average_gradient"] = _zeros_like(params)
        return state

    def update(grads, state, params=None):
        lr, r, mu, eps = (_evaluate(h) for h in (learning_rate, rho, momentum, epsilon))

        def moving_average(old, new):
            decay = _cast(r, new.dtype)
            return decay * old + (1 - decay) * new

        velocity = tree.map_structure(lambda v, g: moving_average(v, ops.square(g)),
                                      state["velocity"], grads)
        new_state = {"velocity": velocity}
        if centered:
            average = tree.map_structure(moving_average, state["average_gradient"], grads)
            new_state["average_gradient"] = average
            denominators = tree.map_structure(
                lambda v, a: v - ops.square(a) + _cast(eps, v.dtype), velocity, average)
        else:
            denominators = tree.map_structure(lambda v: v + _cast(eps, v.dtype), velocity)
        steps = tree.map_structure(lambda g, d: (_cast(lr, g.dtype) * g) / ops.sqrt(d),
                                   grads, denominators)
        if uses_momentum:
            steps = tree.map_structure(lambda m, s: _cast(mu, s.dtype) * m + s,
                                       state["momentum"], steps)
            new_state["momentum"] = steps
        return tree.map_structure(ops.negative, steps), new_state

    return DifferentiableOptimizer(init, update)


def adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    """Adagrad (``keras.optimizers.Adagrad``).

    With gradient g_t at step t = 1, 2, ...:

        acc_t = acc_{t-1} + g_t^2,   acc_0 = ``initial_accumulator_value``
        update_t = -lr g_t / sqrt(acc_t + epsilon)

    State: ``{"accumulator": acc}``.
    """
    _check_non_negative("learning_rate", learning_rate)
    _check_non_negative("initial_accumulator_value", initial_accumulator_value)
    _check_non_negative("epsilon", epsilon)

    def init(params):
        initial = _evaluate(initial_accumulator_value)
        return {"accumulator": tree.map_structure(
            lambda p: ops.zeros_like(p) + _cast(initial, p.dtype), params)}

    def update(grads, state, params=None):
        lr, eps = _evaluate(learning_rate), _evaluate(epsilon)
        accumulator = tree.map_structure(lambda a, g: a + ops.square(g),
                                         state["accumulator"], grads)
        updates = tree.map_structure(
            lambda g, a: -(_cast(lr, g.dtype) * g) / ops.sqrt(a + _cast(eps, g.dtype)),
            grads, accumulator)
        return updates, {"accumulator": accumulator}

    return DifferentiableOptimizer(init, update)

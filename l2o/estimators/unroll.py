"""The inner loop every estimator shares: unroll a learned optimiser, score the unroll.

An unroll of n steps from parameters theta_0 with batches b_1..b_n records
f_t = loss(theta_{t-1}, b_t), then steps theta_t = theta_{t-1} + update_t, so
f_2..f_n depend on the meta-weights. The meta-loss is

    meta_loss = sum_t w_t * phi(f_t)

with w_t from ``unroll_weights`` (sum: 1, mean: 1/n, final: 1 for t = n only;
a callable, the l2o toolkit's form: its n weights for n, a Python int or a
scalar tensor) and, following ``loss_args``, phi(f) = r or log(r) with

    r = (f + eps_n) / (f_0 + eps)         (scale_objective; eps_n = eps only
                                            with use_numerator_epsilon)
    r = f + eps_n                         (scale_objective off)

where f_0 is the loss at the start of the trajectory, held constant.

Imitation truncations score instead the mean over steps of the squared
distance per coordinate between the learned optimiser's parameters after
each step and a teacher's (a Keras optimiser run from the same parameters on
the same batches): (1/n) sum_t ||theta_t - theta_t^teacher||^2 / #coordinates. With
``obj_train_max_multiplier`` m > 0, an unroll in which some f_t exceeds
f_0 + (m - 1)|f_0| is reported as exploded, and the trainer restarts that
trajectory rather than learning from it.
"""

import numpy as np
from keras import ops

from l2o import backend
from l2o.tree import all_finite


def step_weights(unroll_weights, length, dtype):
    if callable(unroll_weights):
        return ops.reshape(ops.cast(unroll_weights(length), dtype), (-1,))
    index = ops.arange(length)
    if unroll_weights == "sum":
        return ops.ones((length,), dtype)
    if unroll_weights == "mean":
        return ops.ones((length,), dtype) / ops.cast(length, dtype)
    return ops.cast(index == length - 1, dtype)


def meta_loss(losses, initial_loss, loss_args, unroll_weights):
    epsilon = loss_args["epsilon"]
    numerator = losses + (epsilon if loss_args["use_numerator_epsilon"] else 0.0)
    if loss_args["scale_objective"]:
        numerator = numerator / (initial_loss + epsilon)
    terms = ops.log(numerator) if loss_args["use_log_objective"] else numerator
    return ops.sum(step_weights(unroll_weights, ops.shape(losses)[0], losses.dtype) * terms)


def exploded(losses, initial_loss, loss_args):
    """True where an unroll's losses left the allowed range (or stopped being finite)."""
    finite = all_finite([losses])
    multiplier = loss_args["obj_train_max_multiplier"]
    if multiplier <= 0:
        return ops.logical_not(finite)
    ceiling = initial_loss + (multiplier - 1.0) * ops.abs(initial_loss)
    return ops.logical_or(ops.logical_not(finite), ops.max(losses) > ops.cast(ceiling, losses.dtype))


def imitation_distance(params, targets):
    """Mean squared distance per coordinate between two lists of parameters."""
    total = sum(ops.sum(ops.square(p - t)) for p, t in zip(params, targets))
    return total / sum(int(np.prod(p.shape)) for p in params)


def unroll(rule, problem, meta_weights, params, state, batches, second_order=True,
           scales=None, targets=None):
    """Runs the inner loop over the leading axis of ``batches``.

    Returns ``(params, state, losses, distances)``: the final parameters and
    optimiser state, f_1..f_n, and, when ``targets`` (parameter lists stacked
    along the same axis) are given, the distance of each step's new parameters
    to that step's target (else None). ``scales``, one tensor per parameter,
    makes the inner loss f(scales * theta): the random scaling of Lv et al.
    """

    def scaled_loss(params, batch):
        if scales is not None:
            params = [s * p for s, p in zip(scales, params)]
        return problem.loss(params, batch), None

    loss_and_grads = backend.value_and_grad(scaled_loss, wrt=None)

    def step(carry, inputs):
        params, state = carry
        batch, target = inputs if targets is not None else (inputs, None)
        (loss, _), grads = loss_and_grads(params, batch)
        if not second_order:
            grads = backend.stop_gradient(grads)
        updates, state = rule.update(meta_weights, grads, params, state)
        params = [p + u for p, u in zip(params, updates)]
        outputs = loss if target is None else (loss, imitation_distance(params, target))
        return (params, state), outputs

    xs = batches if targets is None else (batches, list(targets))
    (params, state), outputs = backend.scan(step, (list(params), state), xs)
    losses, distances = outputs if targets is not None else (outputs, None)
    return params, state, losses, distances

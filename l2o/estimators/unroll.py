"""The inner loop every estimator shares: unroll a learned optimiser, score the unroll.

An unroll of n steps from parameters theta_0 with batches b_1..b_n records
f_t = loss(theta_{t-1}, b_t), then steps theta_t = theta_{t-1} + update_t, so
f_2..f_n depend on the meta-weights. The meta-loss is

    meta_loss = sum_t w_t * phi(f_t)

with w_t from ``unroll_weights`` (sum: 1, mean: 1/n, final: 1 for t = n only)
and, following ``loss_args``, phi(f) = r or log(r) with

    r = (f + eps_n) / (f_0 + eps)         (scale_objective; eps_n = eps only
                                            with use_numerator_epsilon)
    r = f + eps_n                         (scale_objective off)

where f_0 is the loss at the start of the trajectory, held constant. With
``obj_train_max_multiplier`` m > 0, an unroll in which some f_t exceeds
f_0 + (m - 1)|f_0| is reported as exploded, and the trainer restarts that
trajectory rather than learning from it.
"""

from keras import ops

from l2o import backend


def step_weights(unroll_weights, length, dtype):
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
    finite = ops.all(ops.isfinite(losses))
    multiplier = loss_args["obj_train_max_multiplier"]
    if multiplier <= 0:
        return ops.logical_not(finite)
    ceiling = initial_loss + (multiplier - 1.0) * ops.abs(initial_loss)
    return ops.logical_or(ops.logical_not(finite), ops.max(losses) > ops.cast(ceiling, losses.dtype))


def unroll(rule, problem, meta_weights, params, state, batches, second_order=True):
    """Runs the inner loop over the leading axis of ``batches``.

    Returns ``(params, state, losses)``: the final parameters and optimiser
    state, and f_1..f_n.
    """
    loss_and_grads = backend.value_and_grad(lambda p, b: (problem.loss(p, b), None), wrt=None)

    def step(carry, batch):
        params, state = carry
        (loss, _), grads = loss_and_grads(params, batch)
        if not second_order:
            grads = backend.stop_gradient(grads)
        updates, state = rule.update(meta_weights, grads, params, state)
        return ([p + u for p, u in zip(params, updates)], state), loss

    (params, state), losses = backend.scan(step, (list(params), state), batches)
    return params, state, losses

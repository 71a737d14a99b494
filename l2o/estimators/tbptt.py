"""Truncated backpropagation through time (TBPTT).

The meta-gradient of one truncation is the exact gradient of its meta-loss
(see ``l2o.estimators.unroll``) with respect to the meta-weights, backpropagated
through the K inner steps and the inner gradients themselves (``second_order``;
off, the inner gradients are treated as constants as in Andrychowicz et al.).
Parameters and optimiser state then carry over to the next truncation, which
is where the bias comes from: the influence of the meta-weights on the state at
the start of a truncation is ignored.
"""

from keras import ops

from l2o import backend
from l2o.estimators.unroll import exploded, meta_loss, unroll
from l2o.optimizers.base import all_finite


class TBPTT:
    """Meta-gradients and plain unrolls of one problem, compiled once.

    ``estimate`` returns ``(meta_loss, grads, usable, params, state, losses,
    exploded)`` for a truncation, ``usable`` saying whether the meta-loss and
    every gradient are finite; ``imitate`` returns ``(imitation_loss, grads,
    usable, params, state)`` for a truncation scored against teacher
    parameters; ``evaluate`` returns ``(meta_loss, params, state, losses,
    exploded)``.
    """

    def __init__(self, rule, problem, meta_variables, loss_args, unroll_weights,
                 second_order=True, jit_compile=False):
        self.rule, self.problem = rule, problem
        self.meta_variables = meta_variables
        self.loss_args, self.unroll_weights = loss_args, unroll_weights
        self.second_order = second_order

        variables = list(meta_variables.values())

        def meta_weights():
            return {name: ops.convert_to_tensor(v) for name, v in self.meta_variables.items()}

        def scored_unroll(params, state, batches, initial_loss, scales=None):
            params, state, losses, _ = unroll(rule, problem, meta_weights(), params, state,
                                              batches, second_order, scales)
            value = meta_loss(losses, initial_loss, loss_args, unroll_weights)
            return value, (params, state, losses, exploded(losses, initial_loss, loss_args))

        def imitation_unroll(params, state, batches, targets, scales=None):
            params, state, _, distances = unroll(rule, problem, meta_weights(), params, state,
                                                 batches, second_order, scales, targets)
            return ops.mean(distances), (params, state)

        def estimate(params, state, batches, initial_loss, scales=None):
            (value, (params, state, losses, blew_up)), grads = backend.value_and_grad(
                scored_unroll, variables)(params, state, batches, initial_loss, scales)
            return value, grads, all_finite([value, *grads]), params, state, losses, blew_up

        def imitate(params, state, batches, targets, scales=None):
            (value, (params, state)), grads = backend.value_and_grad(
                imitation_unroll, variables)(params, state, batches, targets, scales)
            return value, grads, all_finite([value, *grads]), params, state

        def evaluate(params, state, batches, initial_loss):
            value, (params, state, losses, blew_up) = scored_unroll(
                params, state, batches, initial_loss)
            return value, params, state, losses, blew_up

        self.estimate = backend.compile_fn(estimate, jit_compile, relax_leading_dim=True)
        self.imitate = backend.compile_fn(imitate, jit_compile, relax_leading_dim=True)
        self.evaluate = backend.compile_fn(evaluate, jit_compile, relax_leading_dim=True)
        self.initial_loss = backend.compile_fn(problem.loss, jit_compile)

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

``training/meta_objective`` chooses what each step scores (the PES paper's
objectives; ``train_sum_loss``, the default, is the above):

    train_sum_loss   s_t = f_t = loss(theta_{t-1}, b_t)
    train_sum_acc    s_t = accuracy(theta_{t-1}, b_t)
    val_sum_loss     s_t = loss(theta_t, v_t)
    val_sum_acc      s_t = accuracy(theta_t, v_t)

with v_t the validation minibatch of step t, drawn from the problem's
validation split by (seed, step) alone (``Problem.validation_batches``), the
size of a training batch. The loss objectives are scored as above with s_t
for f_t; for ``val_sum_loss`` the f_0 of the ratio is loss(theta_0, v_0),
and so is the reference of ``obj_train_max_multiplier``. Accuracies are
maximised, with ``unroll_weights`` only and no ``loss_args``:

    meta_loss = - sum_t w_t s_t

Accuracy has no gradient: its objectives serve ES and PES, never TBPTT.

The floor (``training/floor_weight`` lambda > 0; loss objectives, ES and PES): each
inner run also carries a reference run of Adam at ``training/floor_learning_rate``
(Keras's Adam, ``reference_update``) from the same start on the same batches, and
scores it on the same data, s^ref_t; each step's term then gains a hinge,

    w_t * lambda * max(0, log(s_t + eps) - log(s^ref_t + eps)),

which costs only where the learned rule is behind the reference: the floor a user
holds a learned optimiser to (never worse than Adam at its default, at any step),
which a summed objective alone trades for speed elsewhere in the horizon.

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

META_OBJECTIVES = ("train_sum_loss", "train_sum_acc", "val_sum_loss", "val_sum_acc")


def objective_needs(name):
    """What the meta-objective ``name`` needs of a problem beyond its training loss: a subset
    of {"validation", "accuracy"}, as ``Problem.offers`` says them."""
    data, measure = name.split("_sum_")
    return frozenset({"validation"} if data == "val" else ()) | frozenset(
        {"accuracy"} if measure == "acc" else ())


class MetaObjective:
    """``training/meta_objective`` ``name`` on ``problem``: what each step scores (see the
    module docstring), the validation minibatches that it scores on, and the floor
    (``floor_weight`` 0: none) against Adam at ``floor_learning_rate``."""

    def __init__(self, name, problem, floor_weight=0.0, floor_learning_rate=1e-3):
        self.name, self.problem = name, problem
        self.floor_weight, self.floor_learning_rate = float(floor_weight), float(floor_learning_rate)
        needs = objective_needs(name)
        self.on_validation, self.accuracy = "validation" in needs, "accuracy" in needs
        # v_t is as large as a training batch (every batch of a stream is).
        self.size = np.shape(problem.batches(0, 0, 1)[0])[1] if self.on_validation else None

    @property
    def scores_losses(self):
        """Whether s_t is the training loss f_t itself (``train_sum_loss``)."""
        return not (self.on_validation or self.accuracy)

    def held_out(self, seed, start, count):
        """v_t for t = ``start`` .. ``start + count - 1`` of run ``seed``, stacked on axis 0;
        () for the objectives that score training batches."""
        if not self.on_validation:
            return ()
        return self.problem.validation_batches(seed, start, count, self.size)

    def score(self, loss, before, after, batch, held_out):
        """s_t of a step: its training loss ``loss``, the parameters ``before`` and ``after``
        it (as the problem sees them), its training ``batch`` and validation minibatch."""
        measure = self.problem.accuracy if self.accuracy else self.problem.loss
        if self.on_validation:
            return measure(after, held_out)
        return measure(before, batch) if self.accuracy else loss


def reference_init(params):
    """The reference Adam's state for ``params``: its step count and moments."""
    return {"step": ops.zeros((), params[0].dtype),
            "m": [ops.zeros_like(p) for p in params], "v": [ops.zeros_like(p) for p in params]}


def reference_update(grads, state, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """``(updates, state)``: one step of Keras's Adam (its defaults),

        m <- m + (1 - b1)(g - m),   v <- v + (1 - b2)(g^2 - v),
        update = -lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""
    step = state["step"] + 1.0
    dtype = step.dtype
    rate = learning_rate * ops.sqrt(1.0 - ops.power(ops.convert_to_tensor(beta_2, dtype), step)) \
        / (1.0 - ops.power(ops.convert_to_tensor(beta_1, dtype), step))
    new = {"step": step, "m": [], "v": []}
    updates = []
    for g, m, v in zip(grads, state["m"], state["v"]):
        m = m + (1.0 - beta_1) * (g - m)
        v = v + (1.0 - beta_2) * (ops.square(g) - v)
        new["m"].append(m)
        new["v"].append(v)
        updates.append(-rate * m / (ops.sqrt(v) + epsilon))
    return updates, new


def step_weights(unroll_weights, length, dtype):
    if callable(unroll_weights):
        return ops.reshape(ops.cast(unroll_weights(length), dtype), (-1,))
    index = ops.arange(length)
    if unroll_weights == "sum":
        return ops.ones((length,), dtype)
    if unroll_weights == "mean":
        return ops.ones((length,), dtype) / ops.cast(length, dtype)
    return ops.cast(index == length - 1, dtype)


def meta_loss(scores, initial_loss, loss_args, unroll_weights, objective="train_sum_loss",
              reference_scores=None, floor_weight=0.0):
    """The meta-loss of an unroll's scores s_1..s_n under ``objective`` (a name), with the
    floor's hinge (weight ``floor_weight``) against the reference's ``reference_scores``."""
    weights = step_weights(unroll_weights, ops.shape(scores)[0], scores.dtype)
    if "accuracy" in objective_needs(objective):
        return -ops.sum(weights * scores)
    epsilon = loss_args["epsilon"]
    numerator = scores + (epsilon if loss_args["use_numerator_epsilon"] else 0.0)
    if loss_args["scale_objective"]:
        numerator = numerator / (initial_loss + epsilon)
    terms = ops.log(numerator) if loss_args["use_log_objective"] else numerator
    if reference_scores is not None and floor_weight > 0:
        terms = terms + floor_weight * ops.relu(
            ops.log(scores + epsilon) - ops.log(reference_scores + epsilon))
    return ops.sum(weights * terms)


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
           scales=None, targets=None, objective=None, held_out=(), reference=None):
    """Runs the inner loop over the leading axis of ``batches``.

    Returns ``(params, state, losses, outputs)``: the final parameters and
    optimiser state, f_1..f_n, and either, when ``targets`` (parameter lists
    stacked along the same axis) are given, the distance of each step's new
    parameters to that step's target, or the scores s_1..s_n of ``objective``
    (a ``MetaObjective``; None: ``train_sum_loss``, whose scores are f_1..f_n),
    ``held_out`` being its v_1..v_n (``MetaObjective.held_out``).
    ``scales``, one tensor per parameter, makes the inner loss f(scales * theta):
    the random scaling of Lv et al. ``reference`` (the floor's reference run: its
    parameters and ``reference_init`` state) steps beside the learned rule, by
    ``reference_update`` at ``objective.floor_learning_rate`` on the same batches; then
    ``(reference, reference scores)`` follow the four outputs.
    """

    def scaled(params):
        return params if scales is None else [s * p for s, p in zip(scales, params)]

    def scaled_loss(params, batch):
        return problem.loss(scaled(params), batch), None

    loss_and_grads = backend.value_and_grad(scaled_loss, wrt=None)
    # train_sum_loss's scores are the losses: its loop stays as it always was.
    scoring = targets is None and objective is not None and not objective.scores_losses

    def score(loss, params, new_params, batch, extra):
        if scoring:
            return objective.score(loss, scaled(params), scaled(new_params), batch, extra)
        return loss

    def step(carry, inputs):
        params, state, *others = carry
        batch, extra = inputs if targets is not None or scoring else (inputs, None)
        (loss, _), grads = loss_and_grads(params, batch)
        if not second_order:
            grads = backend.stop_gradient(grads)
        updates, state = rule.update(meta_weights, grads, params, state)
        new_params = [p + u for p, u in zip(params, updates)]
        if targets is not None:
            outputs = (loss, imitation_distance(new_params, extra))
        elif scoring or others:
            outputs = (loss, score(loss, params, new_params, batch, extra))
        else:
            outputs = loss
        if others:
            (reference_params, reference_state), = others
            (reference_loss, _), reference_grads = loss_and_grads(reference_params, batch)
            reference_updates, reference_state = reference_update(
                backend.stop_gradient(reference_grads), reference_state,
                objective.floor_learning_rate)
            new_reference = [p + u for p, u in zip(reference_params, reference_updates)]
            others = [(new_reference, reference_state)]
            outputs += (score(reference_loss, reference_params, new_reference, batch, extra),)
        return (new_params, state, *others), outputs

    xs = (batches, list(targets)) if targets is not None else (
        (batches, held_out) if scoring else batches)
    carry = (list(params), state) + (() if reference is None else (
        (list(reference[0]), reference[1]),))
    (params, state, *others), outputs = backend.scan(step, carry, xs)
    if targets is None and not scoring and reference is None:
        return params, state, outputs, outputs
    return (params, state, *outputs[:2], *others, *outputs[2:])

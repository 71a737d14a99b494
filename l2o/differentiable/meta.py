"""The two schedules of gradient-based meta-learning, over differentiable optimisers.

Both run K inner steps of a differentiable optimiser on an inner loss L,

    theta_k = theta_{k-1} + update_k(grad L(theta_{k-1}, b_k); eta),   k = 1..K,

score the result with an outer loss L'(theta_K, b') and differentiate it
through all K steps, the inner gradients included (second order). eta are the
meta-variables: Keras variables that the optimiser's hyperparameters (as
callables, e.g. ``lambda: ops.exp(log_lr)``) or the losses read.

Offline (MAML, Finn et al. 2017), ``OfflineMetaLearner``: each meta-step
adapts a batch of tasks from the same initial weights theta_0, and the mean
over tasks of L'(theta_K^i, b'^i) updates theta_0 and eta. The adapted
weights are thrown away; the next meta-step starts again from theta_0.

Online (meta-gradient RL, Xu et al. 2018), ``OnlineMetaLearner``: one
learner whose weights and optimiser state carry over. A meta-step runs the K
inner steps from the current weights (constants: their dependence on eta
through earlier meta-steps is truncated, as in TBPTT), updates only eta with
dL'(theta_K, b')/d eta, and keeps theta_K and its optimiser state.

Inner loops are unrolled in Python, which suits the few inner steps of a
meta-step; both learners compile their meta-step into one graph.
"""

import keras
from keras import ops, tree

from l2o import backend
from l2o.differentiable.optimizers import apply_updates


def inner_loop(loss_fn, params, optimizer, batches, state=None):
    """One step of ``optimizer`` on ``loss_fn(params, batch)`` per batch, on the tape.

    ``batches`` is a sequence; ``state`` defaults to ``optimizer.init(params)``.
    Returns ``(params, state, losses)``, ``losses[k]`` being the loss at the
    weights before step k + 1.
    """
    if not batches:
        raise ValueError("inner_loop: needs at least one batch")
    loss_and_grads = backend.value_and_grad(
        lambda params, batch: (loss_fn(params, batch), None), wrt=None)
    state = optimizer.init(params) if state is None else state
    losses = []
    for batch in batches:
        (loss, _), grads = loss_and_grads(params, batch)
        updates, state = optimizer.update(grads, state, params)
        params = apply_updates(params, updates)
        losses.append(loss)
    return params, state, ops.stack(losses)


def as_tensors(structure):
    """``structure`` with every tensor or Keras variable copied into a tensor.

    ops.convert_to_tensor hands a Keras variable back unchanged; a copy is a
    tensor, which a tape can watch and a reader of the variable cannot change.
    """
    return tree.map_structure(ops.copy, structure)


class OfflineMetaLearner:
    """MAML: meta-learns initial weights (and ``meta_variables``) for fast adaptation.

    ``loss_fn(params, batch)`` is the inner loss of one task and
    ``outer_loss_fn`` (default: ``loss_fn``) its outer loss. ``params`` (a
    nested structure of arrays) seeds the initial weights, held in
    ``self.params`` as Keras variables; Keras variables among them (a model's
    ``trainable_variables``, with ``model_loss``) are used as they are, so the
    meta-learnt weights are the model's own. ``meta_optimizer`` is a Keras
    optimiser; it updates the initial weights and ``meta_variables``.

    Batches carry a leading task axis: ``inner_batches[k]`` holds every task's
    batch for inner step k and ``outer_batch`` every task's outer batch. The
    tasks are adapted in parallel with ``vectorized_map``.
    """

    def __init__(self, loss_fn, params, optimizer, meta_optimizer, meta_variables=(),
                 outer_loss_fn=None):
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.outer_loss_fn = outer_loss_fn or loss_fn
        self.params = tree.map_structure(
            lambda p: p if isinstance(p, keras.Variable) else keras.Variable(
                p, name="initial_weight"), params)
        self.meta_variables = list(meta_variables)
        self.variables = tree.flatten(self.params) + self.meta_variables
        self.meta_optimizer = meta_optimizer
        meta_optimizer.build(self.variables)
        self._step = backend.compile_fn(
            self._meta_step, variables=self.variables + list(meta_optimizer.variables))
        self._adapt = backend.compile_fn(self._adapt_tasks, variables=self.variables)

    def _adapt_tasks(self, params, inner_batches):
        return ops.vectorized_map(
            lambda batches: inner_loop(self.loss_fn, params, self.optimizer, batches)[0],
            list(inner_batches))

    def _meta_step(self, inner_batches, outer_batch):
        def meta_loss():
            initial = self._initial()

            def task_outer_loss(task):
                inner, outer = task
                adapted, _, _ = inner_loop(self.loss_fn, initial, self.optimizer, inner)
                return self.outer_loss_fn(adapted, outer)

            losses = ops.vectorized_map(task_outer_loss, (list(inner_batches), outer_batch))
            return ops.mean(losses), None

        (loss, _), grads = backend.value_and_grad(meta_loss, self.variables)()
        self.meta_optimizer.apply(grads, self.variables)
        return loss

    def _initial(self):
        return as_tensors(self.params)

    def step(self, inner_batches, outer_batch):
        """One meta-update on a batch of tasks; returns the mean outer loss before it."""
        return self._step(list(inner_batches), outer_batch)

    def adapt(self, inner_batches, params=None):
        """Each task's weights after the inner loop, stacked on a leading task axis.

        Starts from ``params`` (one structure of weights shared by every task)
        or, by default, the meta-learned initial weights; changes nothing.
        """
        start = self._initial() if params is None else as_tensors(params)
        return self._adapt(start, list(inner_batches))


class OnlineMetaLearner:
    """Meta-gradient learning of ``meta_variables`` while the weights keep training.

    ``self.params`` and ``self.state`` are the current weights and optimiser
    state, carried from meta-step to meta-step. ``loss_fn``,
    ``outer_loss_fn`` and ``meta_optimizer`` are as for
    ``OfflineMetaLearner``; batches have no task axis.
    """

    def __init__(self, loss_fn, params, optimizer, meta_optimizer, meta_variables,
                 outer_loss_fn=None):
        self.meta_variables = list(meta_variables)
        if not self.meta_variables:
            raise ValueError("OnlineMetaLearner: meta_variables is empty; "
                             "nothing would be meta-learned")
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.outer_loss_fn = outer_loss_fn or loss_fn
        self.params = as_tensors(params)
        self.state = optimizer.init(self.params)
        self.meta_optimizer = meta_optimizer
        meta_optimizer.build(self.meta_variables)
        self._step = backend.compile_fn(
            self._meta_step, variables=self.meta_variables + list(meta_optimizer.variables))

    def _meta_step(self, params, state, inner_batches, outer_batch):
        def outer_loss():
            adapted, new_state, losses = inner_loop(self.loss_fn, params, self.optimizer,
                                                    inner_batches, state)
            return self.outer_loss_fn(adapted, outer_batch), (adapted, new_state, losses)

        (loss, (params, state, losses)), grads = backend.value_and_grad(
            outer_loss, self.meta_variables)()
        self.meta_optimizer.apply(grads, self.meta_variables)
        return loss, losses, backend.stop_gradient(params), backend.stop_gradient(state)

    def step(self, inner_batches, outer_batch):
        """K inner steps, one meta-update; returns ``(outer_loss, inner_losses)``."""
        loss, losses, self.params, self.state = self._step(
            self.params, self.state, list(inner_batches), outer_batch)
        return loss, losses

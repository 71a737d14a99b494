"""Unmodified Keras models, differentiable through their own optimisation steps.

Meta-Optim's interface on a built ``keras.Model``::

    net = MetaModel(model)                   # the model is neither copied nor rewritten
    inner = MetaSGD(net, learning_rate=lambda: ops.exp(log_lr))
    with SlidingWindow(offline=True) as window:
        for x, y in support:
            inner.step(loss(y, net(x)))      # theta <- theta + update(d loss / d theta)
        outer = loss(y_query, net(x_query))
    grads = window.gradient(outer, [log_lr, *model.trainable_variables])

Inside a window a ``MetaModel``'s weights are tensors: ``net(...)`` is
``model.stateless_call`` on them, so the model's code and variables stay as
they are. The window starts them as copies of the model's variables and
records everything on one tape; ``step(loss)`` takes the loss's gradient on a
tape opened after the previous step and replaces the weights by the
optimiser's update, all on the window's tape. After K steps the weights are a
differentiable function of the initial weights and of whatever meta-variables
the optimiser reads (hyperparameters given as Keras variables or callables,
as in ``optimizers``), and ``window.gradient`` differentiates an outer loss
through the K steps, the inner gradients included.

``SlidingWindow(offline=...)`` is Meta-Optim's switch between the two
schedules:

- offline (MAML): leaving the window, the model's variables still hold
  theta_0 and each optimiser's state (momenta, Adam's moments) is dropped, so
  the next window starts again from theta_0; the meta-gradient with respect to
  theta_0 and the meta-variables is for an outer Keras optimiser to apply.
- online (meta-gradient RL): leaving the window, the model's variables take
  the last inner weights theta_K and each optimiser keeps its state, both as
  constants (their dependence on the meta-variables is truncated at the
  window's edge, as in TBPTT), so training carries on in the next window.

The same two schedules, compiled and with batches of tasks adapted in
parallel, are ``meta.OfflineMetaLearner`` and ``meta.OnlineMetaLearner``;
``model_loss`` hands them an unmodified Keras model.
"""

import keras
from keras import ops

from l2o import backend
from l2o.differentiable.meta import as_tensors
from l2o.differentiable.optimizers import adagrad, adam, apply_updates, rmsprop, sgd

_OPEN_WINDOWS = []


def _open_window():
    return _OPEN_WINDOWS[-1] if _OPEN_WINDOWS else None


def model_loss(model, loss):
    """``loss_fn(params, batch)`` of a built Keras model, for ``inner_loop`` and the meta-learners.

    ``params`` stand in for ``model.trainable_variables`` (same order) and
    ``batch`` is ``(x, y)``: the value is ``loss(y, model(x))`` computed by
    ``model.stateless_call`` with the non-trainable variables as they are
    (their updates, e.g. batch-norm statistics, are dropped).
    """
    _check_built(model, "model_loss")

    def loss_fn(params, batch):
        x, y = batch
        outputs, _ = model.stateless_call(list(params), list(model.non_trainable_variables), x)
        return loss(y, outputs)

    return loss_fn


def _check_built(model, caller):
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"{caller}: expected a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError(f"{caller}: model {model.name!r} is not built; call it on a batch "
                         "or use model.build(input_shape) first")
    if not model.trainable_variables:
        raise ValueError(f"{caller}: model {model.name!r} has no trainable variables")


class MetaModel:
    """A built Keras model whose weights, inside a ``SlidingWindow``, are differentiable tensors.

    Calling it calls the model: inside a window on the window's current
    weights (``stateless_call``; the non-trainable state, such as batch-norm
    statistics or dropout seeds, is carried from call to call within the
    window), outside one on the model's own variables.
    """

    def __init__(self, model):
        _check_built(model, "MetaModel")
        self.model = model

    def __call__(self, *args, **kwargs):
        window = _open_window()
        if window is None:
            return self.model(*args, **kwargs)
        current = window._weights_of(self)
        outputs, current.non_trainable = self.model.stateless_call(
            current.params, current.non_trainable, *args, **kwargs)
        return outputs

    @property
    def weights(self):
        """The current trainable weights: the window's tensors inside one, else the variables."""
        window = _open_window()
        if window is None:
            return list(self.model.trainable_variables)
        return list(window._weights_of(self).params)


class _Current:
    """One model's weights in one window, and a tape that has recorded since they were set."""

    def __init__(self, model):
        self.params = as_tensors(list(model.trainable_variables))
        self.non_trainable = as_tensors(list(model.non_trainable_variables))
        self._record()

    def _record(self):
        # Only the weights: the meta-variables are the window's tape's business.
        self.tape = backend.Tape(watch=self.params, watch_variables=False)

    def gradient(self, loss):
        self.tape.stop()
        return self.tape.gradient(loss, self.params)

    def replace(self, params):
        self.params = list(params)
        self._record()


class SlidingWindow:
    """A span of differentiable inner steps (Meta-Optim's ``SlidingWindow``); see the module docstring.

    ``with SlidingWindow(offline=True) as window: ...``, then
    ``window.gradient(outer_loss, variables)``. Each window is entered once;
    windows do not nest.
    """

    def __init__(self, offline=True):
        if not isinstance(offline, bool):
            raise TypeError(f"SlidingWindow: offline must be True or False, got {offline!r}")
        self.offline = offline
        self._tape = None
        self._weights = {}  # id(MetaModel) -> (MetaModel, _Current)
        self._states = {}   # id(MetaOptimizer) -> (MetaOptimizer, its optimisers' states)

    def __enter__(self):
        if _OPEN_WINDOWS:
            raise RuntimeError("SlidingWindow: windows do not nest; leave the open one first")
        if self._tape is not None:
            raise RuntimeError("SlidingWindow: a window is entered once; make a new one")
        self._tape = backend.Tape(persistent=True)
        _OPEN_WINDOWS.append(self)
        return self

    def __exit__(self, error_type, error, traceback):
        _OPEN_WINDOWS.remove(self)
        for _, current in self._weights.values():
            current.tape.stop()
        self._tape.stop()
        if error_type is None and not self.offline:
            for net, current in self._weights.values():
                variables = net.model.trainable_variables + net.model.non_trainable_variables
                for variable, value in zip(variables, current.params + current.non_trainable):
                    variable.assign(value)
            for optimizer, states in self._states.values():
                optimizer.online_states = states

    def _weights_of(self, net):
        if id(net) not in self._weights:
            self._weights[id(net)] = (net, _Current(net.model))
        return self._weights[id(net)][1]

    def gradient(self, target, variables):
        """d target / d ``variables`` (trainable Keras variables) through every step of the window.

        The variables are meta-variables or a model's own (its initial
        weights); a variable the target does not depend on gets zeros. May be
        called inside the window or after it, any number of times.
        """
        if self._tape is None:
            raise RuntimeError("SlidingWindow.gradient: the window has not been entered")
        for variable in variables:
            if not isinstance(variable, keras.Variable):
                raise TypeError("SlidingWindow.gradient: expected Keras variables, got "
                                f"{type(variable).__name__}")
            if not variable.trainable:
                raise ValueError(f"SlidingWindow.gradient: variable {variable.path!r} is not "
                                 "trainable, so the window's tape did not watch it; create it "
                                 "with trainable=True")
        grads = self._tape.gradient(target, variables)
        return [ops.zeros_like(v) if g is None else g for v, g in zip(variables, grads)]


class MetaOptimizer:
    """Steps ``nets`` (``MetaModel``s) by a differentiable optimiser inside a ``SlidingWindow``.

    ``rule`` is one of this package's constructors (``sgd``, ``adam``, ...)
    and ``hyperparameters`` its keyword arguments, with its defaults. A
    hyperparameter given as a dict ``{layer name: value}`` is per layer: every
    top-level layer with trainable weights (of every net) is named once, and
    each layer is stepped by an optimiser of its own. ``online_states`` are the
    optimiser states the last online window left (None before one ends): the
    next online window continues from them.
    """

    rule = None

    def __init__(self, nets, rule=None, **hyperparameters):
        self.name = type(self).__name__
        self.nets = _as_nets(nets, self.name)
        self._groups = _groups(self.nets, rule or self.rule, hyperparameters, self.name)
        self.online_states = None

    def step(self, loss):
        """One differentiable step of every net on ``loss``, computed from their current weights."""
        window = _open_window()
        if window is None:
            raise RuntimeError(f"{self.name}.step: only inside `with SlidingWindow(...)`; "
                               "outside one a step could not be differentiated")
        currents = [window._weights_of(net) for net in self.nets]
        params = [p for current in currents for p in current.params]
        grads = [g for current in currents for g in current.gradient(loss)]
        if all(g is None for g in grads):
            names = ", ".join(repr(net.model.name) for net in self.nets)
            raise ValueError(f"{self.name}.step: the loss does not depend on the current weights "
                             f"of {names}; compute it by calling the MetaModel after the last step")
        grads = [ops.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        if id(self) not in window._states:
            window._states[id(self)] = (self, self._initial_states(window, params))
        states, new_params = [], list(params)
        for (indices, optimizer), state in zip(self._groups, window._states[id(self)][1]):
            updates, state = optimizer.update([grads[i] for i in indices], state)
            for i, param in zip(indices, apply_updates([params[i] for i in indices], updates)):
                new_params[i] = param
            states.append(state)
        window._states[id(self)] = (self, states)
        start = 0
        for current in currents:
            current.replace(new_params[start:start + len(current.params)])
            start += len(current.params)

    def _initial_states(self, window, params):
        if not window.offline and self.online_states is not None:
            return self.online_states
        return [optimizer.init([params[i] for i in indices]) for indices, optimizer in self._groups]


def _as_nets(nets, name):
    nets = list(nets) if isinstance(nets, (list, tuple)) else [nets]
    for net in nets:
        if not isinstance(net, MetaModel):
            raise TypeError(f"{name}: expected MetaModel objects, got {type(net).__name__}; "
                            "wrap a Keras model as MetaModel(model) and call the wrapper")
    if not nets:
        raise ValueError(f"{name}: no MetaModel to optimise")
    return nets


def _groups(nets, rule, hyperparameters, name):
    """``[(indices into the nets' weights, optimiser)]``: one group, or one per layer."""
    variables = [v for net in nets for v in net.model.trainable_variables]
    per_layer = sorted(key for key, value in hyperparameters.items() if isinstance(value, dict))
    if not per_layer:
        return [(list(range(len(variables))), rule(**hyperparameters))]
    position = {id(v): i for i, v in enumerate(variables)}
    layers = {}
    for net in nets:
        for layer in net.model.layers:
            if layer.trainable_variables:
                if layer.name in layers:
                    raise ValueError(f"{name}: two layers are named {layer.name!r}; per-layer "
                                     "hyperparameters need distinct layer names")
                layers[layer.name] = [position[id(v)] for v in layer.trainable_variables]
    covered = sorted(i for indices in layers.values() for i in indices)
    if covered != list(range(len(variables))):
        raise ValueError(f"{name}: some trainable variables belong to no top-level layer, so "
                         "per-layer hyperparameters cannot cover them")
    for key in per_layer:
        given = hyperparameters[key]
        if set(given) != set(layers):
            raise ValueError(f"{name}: {key} per layer must name exactly the layers "
                             f"{sorted(layers)}; got {sorted(given)}")
    return [(indices, rule(**{key: value[layer] if isinstance(value, dict) else value
                              for key, value in hyperparameters.items()}))
            for layer, indices in layers.items()]


class MetaSGD(MetaOptimizer):
    """Meta-Optim's ``MetaSGD``: ``sgd`` (Keras's SGD; its arguments and defaults) on MetaModels."""

    rule = staticmethod(sgd)


class MetaAdam(MetaOptimizer):
    """Meta-Optim's ``MetaAdam``: ``adam`` (Keras's Adam plus ``eps_root``) on MetaModels."""

    rule = staticmethod(adam)


class MetaRMSprop(MetaOptimizer):
    """``rmsprop`` (Keras's RMSprop) on MetaModels."""

    rule = staticmethod(rmsprop)


class MetaAdagrad(MetaOptimizer):
    """``adagrad`` (Keras's Adagrad) on MetaModels."""

    rule = staticmethod(adagrad)

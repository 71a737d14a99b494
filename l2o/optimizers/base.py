"""The two faces of a learned optimiser.

``UpdateRule`` is the pure core, in the manner of optax's ``init``/``update``
pairs: ``update(meta_weights, grads, params, state) -> (updates, state)`` with
``keras.ops`` only, so the meta-trainer can differentiate through it.
``LearnedOptimizer`` is the Keras façade: a ``keras.optimizers.Optimizer`` whose
``build`` creates the rule's state per variable and whose ``update_step`` adds
``learning_rate * update`` to the variable. Both call the same ``update``.
"""

import keras
import numpy as np
from keras import ops


class UpdateRule:
    """A learned update rule: network hyperparameters in, pure maths out.

    Subclasses define ``init_meta_weights``, ``init_state`` and ``update``; the
    keyword defaults of ``__init__`` are the config's ``network`` defaults.
    """

    def init_meta_weights(self, seed):
        """Initial meta-weights: ``{name: numpy array}``, float32."""
        raise NotImplementedError

    def init_state(self, params, seed):
        """Optimiser state for the list ``params`` (a pytree of tensors).

        ``seed`` feeds any random initial state (learning rates drawn per
        coordinate); it is called eagerly, so numpy may draw them.
        """
        raise NotImplementedError

    def update(self, meta_weights, grads, params, state):
        """``(updates, new_state)``; the new parameters are ``params + updates``."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, network):
        """Raises ConfigError naming ``network/<key>`` for a value out of range."""


def all_finite(tensors):
    """True where every entry of every tensor is finite (a loss and its gradients)."""
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


def flatten_all(tensors):
    """The coordinates of a list of tensors as one vector."""
    return ops.concatenate([ops.reshape(t, (-1,)) for t in tensors], axis=0)


def unflatten_like(vector, like):
    """Splits ``vector`` into tensors shaped like the list ``like``."""
    sizes = [int(np.prod(t.shape)) for t in like]
    pieces = ops.split(vector, np.cumsum(sizes)[:-1].tolist(), axis=0) if len(like) > 1 \
        else [vector]
    return [ops.reshape(p, t.shape) for p, t in zip(pieces, like)]


class LearnedOptimizer(keras.optimizers.Optimizer):
    """Keras optimiser that applies a learned ``UpdateRule``.

    ``learning_rate`` multiplies the learned update (1.0 applies it exactly as
    meta-trained), so Keras learning-rate schedules and callbacks still work.
    ``meta_weights`` default to a fresh initialisation from ``seed``; trained
    ones come from ``l2o.load_optimizer(run_directory)``.
    """

    rule_class = UpdateRule

    def __init__(self, meta_weights=None, network=None, learning_rate=1.0, seed=0,
                 name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name or type(self).__name__,
                         **kwargs)
        self.network = dict(network or {})
        self.seed = seed
        self.rule = self.rule_class(**self.network)
        if meta_weights is None:
            meta_weights = self.rule.init_meta_weights(seed)
        self.meta_weights = {k: np.asarray(v, np.float32) for k, v in meta_weights.items()}

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # The variables it updates, kept out of Keras's tracking (which would count
        # them among the optimiser's own variables, and save them with its state).
        object.__setattr__(self, "_targets", list(variables))
        self._state_structure = self.rule.init_state(
            [ops.zeros(v.shape, v.dtype) for v in variables], self.seed)
        flat = keras.tree.flatten(self._state_structure)
        # The initial values are the variables' initializers, not assignments: an
        # assignment made while a tf.function traces ``apply`` would rerun every call.
        self._state_slots = [
            self.add_variable(shape=value.shape, dtype=value.dtype, name=f"l2o_state_{k}",
                              initializer=lambda shape, dtype, value=value: value)
            for k, value in enumerate(flat)]
        # Variables, not graph constants: as constants, a uniform [0, 0] meta-weight
        # failed in model.fit's graph with "Attempting to slice scalar input" (TF 2.21).
        self._meta_slots = {
            name: self.add_variable(shape=value.shape, dtype="float32", name=f"l2o_meta_{k}",
                                    initializer=lambda shape, dtype, value=value: value)
            for k, (name, value) in enumerate(sorted(self.meta_weights.items()))}

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """One call of the pure rule over every variable.

        Keras documents this as the collective update a backend may override;
        the hierarchical rules need all variables at once, and one call over
        the concatenated coordinates is faster than one per variable. A
        variable without a gradient in this step gets a zero gradient.
        """
        given = {self._get_variable_index(v): g for g, v in zip(grads, trainable_variables)}
        grads = [given.get(index, ops.zeros(v.shape, v.dtype))
                 for index, v in enumerate(self._targets)]
        dtype = self._targets[0].dtype
        state = keras.tree.pack_sequence_as(
            self._state_structure, [ops.convert_to_tensor(s) for s in self._state_slots])
        meta = {k: ops.cast(v, dtype) for k, v in self._meta_slots.items()}
        updates, new_state = self.rule.update(
            meta, grads, [ops.convert_to_tensor(v) for v in self._targets], state)
        for variable, update in zip(self._targets, updates):
            self.assign_add(variable, ops.cast(learning_rate, variable.dtype) * update)
        for slot, value in zip(self._state_slots, keras.tree.flatten(new_state)):
            self.assign(slot, value)

    def get_config(self):
        config = super().get_config()
        config.update(network=self.network, seed=self.seed,
                      meta_weights={k: v.tolist() for k, v in self.meta_weights.items()})
        return config

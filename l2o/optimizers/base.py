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

    def init_state(self, params):
        """Optimiser state for the list ``params`` (a pytree of tensors)."""
        raise NotImplementedError

    def update(self, meta_weights, grads, params, state):
        """``(updates, new_state)``; the new parameters are ``params + updates``."""
        raise NotImplementedError

    @classmethod
    def validate_config(cls, network):
        """Raises ConfigError naming ``network/<key>`` for a value out of range."""


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
        self._state_structures, self._state_slots = [], []
        for variable in variables:
            initial = self.rule.init_state([ops.zeros(variable.shape, variable.dtype)])
            flat = keras.tree.flatten(initial)
            slots = [self.add_variable(shape=value.shape, dtype=value.dtype,
                                       initializer="zeros",
                                       name=f"{variable.name}_state_{k}")
                     for k, value in enumerate(flat)]
            for slot, value in zip(slots, flat):
                slot.assign(value)
            self._state_structures.append(initial)
            self._state_slots.append(slots)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slots = self._state_slots[index]
        state = keras.tree.pack_sequence_as(self._state_structures[index],
                                            [ops.convert_to_tensor(s) for s in slots])
        meta = {k: ops.convert_to_tensor(v, variable.dtype) for k, v in self.meta_weights.items()}
        updates, new_state = self.rule.update(meta, [gradient], [ops.convert_to_tensor(variable)],
                                              state)
        self.assign_add(variable, ops.cast(learning_rate, variable.dtype) * updates[0])
        for slot, value in zip(slots, keras.tree.flatten(new_state)):
            self.assign(slot, value)

    def get_config(self):
        config = super().get_config()
        config.update(network=self.network, seed=self.seed,
                      meta_weights={k: v.tolist() for k, v in self.meta_weights.items()})
        return config

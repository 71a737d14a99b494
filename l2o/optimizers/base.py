"""The two faces of a learned optimiser, and what it declares to the generic layers.

``UpdateRule`` is the pure core, in the manner of optax's ``init``/``update``
pairs: ``update(meta_weights, grads, params, state) -> (updates, state)`` with
``keras.ops`` only, so the meta-trainer can differentiate through it.
``LearnedOptimizer`` is the Keras façade: a ``keras.optimizers.Optimizer`` whose
``build`` creates the rule's state per variable and whose ``update_step`` adds
``learning_rate * update`` to the variable. Both call the same ``update``.

A constructor registered in ``l2o.registry.OPTIMIZERS`` derives from
``MetaTrainable`` (the learned optimisers through ``LearnedOptimizer``; PIO,
which samples rather than applies a rule, directly) and declares, as class
attributes and class methods, what the generic layers need of it:

    rule_class                      its ``network`` section: keyword defaults, checks
    validate_run_config(config)     checks of a whole resolved config it cannot honour
    initial_meta_weights(config, problems)           ``{name: array}`` to meta-train from
    gradient_estimators(config, problems, meta_variables, jit_compile)
                                    one ``l2o.estimators.GradientEstimator`` per problem
    from_run(config, meta_weights, run_seed=None, **kwargs)
                                    the Keras optimiser a run's checkpoint describes

and, as an instance method, ``apply_loss(loss_fn, variables)`` when it needs
the loss as a function of the weights rather than its gradient (a sampler
such as PIO): ``l2o.backend.make_train_step`` hands it that instead.
"""

from __future__ import annotations

import abc
from typing import Any

import keras
import numpy as np
from keras import ops

from l2o import backend
from l2o.estimators import learned_rule_estimator
from l2o.validation import (
    ConfigError,
    check_meta_weights,
    check_network,
    check_optimizer_learning_rate,
)


class UpdateRule(abc.ABC):
    """A learned update rule: network hyperparameters in, pure maths out.

    Subclasses define ``init_meta_weights``, ``init_state`` and ``update``; the
    keyword defaults of ``__init__`` are the config's ``network`` defaults, and
    ``validate_config`` checks them (on the config path and in the constructor
    alike). A new learned optimiser is one such rule and a registered
    ``LearnedOptimizer`` naming it, in any module (``tests/test_extending.py``
    meta-trains this one from a config)::

        class LearnedRateRule(UpdateRule):  # SGD at a rate meta-learned on a log scale
            def __init__(self, initial_rate=1e-3):
                self.initial_rate = float(initial_rate)

            @classmethod
            def validate_config(cls, network):
                check_range("network/initial_rate", network["initial_rate"], 0.0)

            def init_meta_weights(self, seed):
                return {"log_rate": np.array(np.log(self.initial_rate), np.float32)}

            def init_state(self, params, seed):
                return {}

            def update(self, meta_weights, grads, params, state):
                return [-ops.exp(meta_weights["log_rate"]) * g for g in grads], state

        @OPTIMIZERS.register("LearnedRateSGD")
        class LearnedRateSGD(LearnedOptimizer):
            rule_class = LearnedRateRule
    """

    @abc.abstractmethod
    def init_meta_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Initial meta-weights: ``{name: numpy array}``, float32."""

    @abc.abstractmethod
    def init_state(self, params: list, seed: int) -> Any:
        """Optimiser state for the list ``params`` (a pytree of tensors).

        ``seed`` feeds any random initial state (learning rates drawn per
        coordinate); it is called eagerly, so numpy may draw them.
        """

    @abc.abstractmethod
    def update(self, meta_weights: dict, grads: list, params: list,
               state: Any) -> tuple[list, Any]:
        """``(updates, new_state)``; the new parameters are ``params + updates``. Pure:
        ``keras.ops`` only, no Python state, so that the meta-trainer can differentiate
        through it and the Keras façade compile it."""

    @classmethod
    def validate_config(cls, network: dict) -> None:
        """Raises ConfigError naming ``network/<key>`` for a value out of range."""


def keep_targets(optimizer, variables):
    """Records the variables ``optimizer`` updates as ``optimizer._targets``.

    Kept out of Keras's tracking, which would count them among the optimiser's own
    variables (``optimizer.variables``) and save them with its state.
    """
    object.__setattr__(optimizer, "_targets", list(variables))


class MetaTrainable(keras.optimizers.Optimizer):
    """A Keras optimiser that ``train.py`` meta-trains: the protocol of this module's
    docstring. A config's ``constructor`` names a subclass."""


class LearnedOptimizer(MetaTrainable):
    """Keras optimiser that applies a learned ``UpdateRule``.

    ``learning_rate`` multiplies the learned update (1.0 applies it exactly as
    meta-trained), so Keras learning-rate schedules and callbacks still work; a number
    must be positive and finite (an int is taken as a float, as in a config).
    ``meta_weights`` default to a fresh initialisation from ``seed``; trained
    ones come from ``l2o.load_optimizer(run_directory)``.
    """

    rule_class = UpdateRule

    def __init__(self, meta_weights=None, network=None, learning_rate=1.0, seed=0,
                 name=None, **kwargs):
        # Checked before Keras makes a variable: a bad size or weight otherwise fails deep
        # in the first training step, or (a layer of 0 units, in oneDNN) aborts the process.
        rule = self.rule_class(**check_network(self.rule_class, network))
        learning_rate = check_optimizer_learning_rate(learning_rate)
        initial = rule.init_meta_weights(seed)
        meta_weights = initial if meta_weights is None else check_meta_weights(meta_weights,
                                                                                initial)
        super().__init__(learning_rate=learning_rate, name=name or type(self).__name__,
                         **kwargs)
        self.network = dict(network or {})
        self.seed = seed
        self.rule = rule
        self.meta_weights = meta_weights

    @classmethod
    def validate_run_config(cls, config):
        """Every learned update rule meta-trains under every estimator and strategy."""

    @classmethod
    def initial_meta_weights(cls, config, problems):
        return cls.rule_class(**config["network"]).init_meta_weights(config["training"]["seed"])

    @classmethod
    def gradient_estimators(cls, config, problems, meta_variables, jit_compile):
        rule, seed = cls.rule_class(**config["network"]), config["training"]["seed"]
        for index, problem in enumerate(problems):
            for member in problem.members():
                try:  # a rule that cannot serve a task (too many groups) says so now
                    rule.init_state([ops.convert_to_tensor(p) for p in member.init(seed)], seed)
                except ValueError as error:
                    raise ConfigError(f"{error} (problems/{index})") from None
        return [learned_rule_estimator(rule, problem, meta_variables, config, jit_compile)
                for problem in problems]

    @classmethod
    def from_run(cls, config, meta_weights, run_seed=None, **kwargs):
        """The optimiser as meta-trained; its seed is the run's (a learned rule is deterministic)."""
        return cls(meta_weights=meta_weights, network=config["network"], **kwargs)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        keep_targets(self, variables)
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
        variable without a gradient in this step gets a zero gradient; a sparse
        one (an embedding's, on TensorFlow) is made dense, as the rules' maths
        is, so the step is the one the dense gradient would give.
        """
        given = {self._get_variable_index(v): backend.dense(g, v.shape)
                 for g, v in zip(grads, trainable_variables)}
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

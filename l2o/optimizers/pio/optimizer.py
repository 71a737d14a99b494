"""PIOOptimizer: the Keras face of PIO (equations in ``l2o.optimizers.pio.rule``)."""

import copy

import keras
import numpy as np
from keras import ops

from l2o import backend, differentiable
from l2o.optimizers.base import MetaTrainable, keep_targets
from l2o.optimizers.pio.drift_estimator import DriftEstimator, dimension_of
from l2o.optimizers.pio.rule import PIORule
from l2o.registry import OPTIMIZERS
from l2o.tree import all_finite, unflatten_like
from l2o.validation import (
    ConfigError,
    check_meta_weights,
    check_network,
    check_optimizer_learning_rate,
)


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("PIO")
class PIOOptimizer(MetaTrainable):
    """Keras optimiser that samples a model's weights with PIO; see ``l2o.optimizers.pio.rule``.

    ``learning_rate`` is the drift network's Adam learning rate; ``network``
    holds ``PIORule``'s settings (``sigma``, ``drift_format``, ...);
    ``meta_weights`` a trained drift network (from ``train.py``; fresh from
    ``seed`` by default). PIO needs the loss at sampled weights, which a
    Keras optimiser is never given: pass ``model=`` to let ``model.fit``
    drive it (its ``train_step`` is replaced by one that hands PIO the batch's
    loss), or call ``apply_loss`` yourself.
    """

    rule_class = PIORule

    def __init__(self, meta_weights=None, network=None, learning_rate=0.01, seed=0, model=None,
                 name=None, **kwargs):
        # Checked before Keras makes a variable, so a bad value fails here, not in a graph.
        checked = check_network(PIORule, network)
        rule = PIORule(**checked)
        learning_rate = check_optimizer_learning_rate(learning_rate)
        if meta_weights is not None:
            # Names now; the shapes follow the model's size, so ``build`` checks them.
            meta_weights = check_meta_weights(meta_weights, rule.init_meta_weights(int(seed), 1),
                                              shapes=False)
        super().__init__(learning_rate=learning_rate, name=name or "PIOOptimizer", **kwargs)
        self.network, self.seed, self.rule = dict(network or {}), int(seed), rule
        if "sigma_schedule" in self.network:  # the serialized form, which get_config can save
            self.network["sigma_schedule"] = checked["sigma_schedule"]
        self.given_meta_weights = meta_weights
        # lr_0 for ``tie_sigma_to_learning_rate``: sigma_t = sigma * lr_t / lr_0.
        self._initial_learning_rate = float(
            learning_rate(0) if isinstance(learning_rate, keras.optimizers.schedules
                                           .LearningRateSchedule) else learning_rate)
        if model is not None:
            attach(self, model)

    # ------------------------------------------------------------------ run protocol

    @classmethod
    def validate_run_config(cls, config):
        """PIO trains its drift network step by step: the meta-training knobs do not apply."""
        training = config["training"]
        if config["estimator_constructor"] != "tbptt":
            raise ConfigError(f"estimator_constructor: PIO trains its drift network by its own "
                              f"estimator; leave it at 'tbptt', got "
                              f"{config['estimator_constructor']!r}")
        for key, neutral in (("epochs", 1), ("repeat", 1),
                             ("persistent", False), ("p_teacher", 0.0),
                             ("parameter_scale_spread", 0.0)):
            if training[key] != neutral:
                raise ConfigError(f"training/{key}: PIO does not use it; leave it at "
                                  f"{neutral!r}, got {training[key]!r}")
        if len(config["problems"]) != 1:
            raise ConfigError(f"problems: PIO trains on exactly one problem (its weights are "
                              f"the drift's dimension), got {len(config['problems'])}")

    @classmethod
    def initial_meta_weights(cls, config, problems):
        if len(problems[0].members()) > 1:
            raise ConfigError("problems/0: PIO samples the weights of one task; a task family "
                              "has several (name one member)")
        seed = config["training"]["seed"]
        return PIORule(**config["network"]).init_meta_weights(
            seed, dimension_of(problems[0], seed))

    @classmethod
    def gradient_estimators(cls, config, problems, meta_variables, jit_compile):
        return [DriftEstimator(PIORule(**config["network"]), problems[0], meta_variables,
                               config["training"]["seed"])]

    @classmethod
    def from_run(cls, config, meta_weights, run_seed=None, **kwargs):
        """Warm-started from the trained drift, which goes on training at the rate it trained
        with; ``run_seed`` gives each evaluation run its own sampling noise."""
        kwargs.setdefault("learning_rate", keras.optimizers.get(
            copy.deepcopy(config["optimizer"])).get_config()["learning_rate"])
        if run_seed is not None:
            kwargs.setdefault("seed", run_seed)
        return cls(meta_weights=meta_weights, network=config["network"], **kwargs)

    # ------------------------------------------------------------------ Keras optimiser

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        keep_targets(self, variables)
        self._like = [ops.zeros(v.shape, v.dtype) for v in variables]
        self.dimension = int(sum(np.prod(v.shape) for v in variables))
        weights = self.rule.init_meta_weights(self.seed, self.dimension)
        if self.given_meta_weights is not None:
            weights = check_meta_weights(self.given_meta_weights, weights)
        self._drift = {
            name: self.add_variable(shape=value.shape, dtype="float32", name=f"pio_drift_{k}",
                                    initializer=lambda shape, dtype, value=value: value)
            for k, (name, value) in enumerate(sorted(weights.items()))}
        # The drift's own Adam: its state lives in this optimiser's variables.
        self._drift_adam = differentiable.adam(lambda: ops.cast(self.learning_rate, "float32"))
        initial = keras.tree.flatten(self._adam_template())
        self._adam_slots = [
            self.add_variable(shape=value.shape, dtype=value.dtype, name=f"pio_adam_{k}",
                              initializer=lambda shape, dtype, value=value: value)
            for k, value in enumerate(initial)]

    def _adam_template(self):
        # Built afresh, not kept: Keras would turn a kept structure's lists into
        # tracked lists that no longer match the plain lists of an update.
        return self._drift_adam.init([ops.zeros(v.shape, "float32")
                                      for v in self._drift.values()])

    def meta_weights(self):
        return {name: np.asarray(v.numpy()) for name, v in self._drift.items()}

    def current_sigma(self, learning_rate):
        schedule = self.rule.sigma_schedule
        if schedule is not None:  # sigma_t = sigma * s(t) / s(0)
            return self.rule.sigma * ops.cast(schedule(self.iterations) / schedule(0), "float32")
        if not self.rule.tie_sigma_to_learning_rate:
            return ops.convert_to_tensor(self.rule.sigma, "float32")
        return self.rule.sigma * ops.cast(learning_rate, "float32") / self._initial_learning_rate

    def _adam(self, objective, grads):
        """One ``l2o.differentiable.adam`` step on the drift weights at ``learning_rate``.

        Skipped (weights and Adam state kept) when the objective or a gradient is
        not finite, as a meta-trainer skips an exploded truncation.
        """
        usable = all_finite([objective, *grads])
        old = [ops.convert_to_tensor(slot) for slot in self._adam_slots]
        updates, state = self._drift_adam.update(
            grads, keras.tree.pack_sequence_as(self._adam_template(), old))
        for variable, update in zip(self._drift.values(), updates):
            variable.assign_add(ops.where(usable, update, ops.zeros_like(update)))
        for slot, before, after in zip(self._adam_slots, old, keras.tree.flatten(state)):
            slot.assign(ops.where(usable, after, before))

    def apply_loss(self, potential, variables):
        """One PIO step: train the drift against ``potential``, then sample the weights.

        ``potential(list of tensors shaped like variables) -> scalar`` is the
        loss V on the current batch. Returns the PIS objective of the last
        drift step (or of the sampling paths when there is none).
        """
        if not self.built:
            # Eagerly, even inside a traced step: built in the trace, the variables
            # were lifted into an initialisation cond whose gradient failed to build.
            with backend.eagerly():
                self.build(variables)
        sigma = self.current_sigma(self.learning_rate)
        static = self.rule.sigma_rescaling == "static"
        scales = self.rule.scales(ops.convert_to_tensor(self.rule.sigma, "float32")
                                  if static else sigma)
        energy = self.rule.energy_of(potential, self._like, sigma)
        base_seed = backend.fold_in(ops.convert_to_tensor([self.seed, 0], "int32"),
                                    self.iterations)
        objective = None
        for step in range(self.rule.drift_steps if self._drift else 0):
            seed = backend.fold_in(base_seed, step + 1)

            def pis_objective(_, seed=seed):
                weights = {k: ops.convert_to_tensor(v) for k, v in self._drift.items()}
                return self.rule.objective(weights, energy, self.dimension, seed, scales), None

            (objective, _), grads = backend.value_and_grad(
                pis_objective, list(self._drift.values()))(None)
            self._adam(objective, grads)
        weights = {k: ops.convert_to_tensor(v) for k, v in self._drift.items()}
        result = self.rule.sample(weights, energy, self.dimension, self.rule.trajectories,
                                  base_seed, scales)
        chosen = self.rule.select(result["samples"], result["energy"])
        # A step whose samples all blew up leaves the weights where they were.
        current = ops.concatenate([ops.reshape(ops.cast(v, chosen.dtype), (-1,))
                                   for v in self._targets], axis=0)
        chosen = ops.where(all_finite([chosen]), chosen, current)
        for variable, value in zip(self._targets, unflatten_like(chosen, self._like)):
            variable.assign(ops.cast(value, variable.dtype))
        self.iterations.assign_add(1)
        return ops.mean(result["loss"]) / self.dimension if objective is None else objective

    def apply(self, grads, trainable_variables=None):
        # Where Keras hands an optimiser gradients (model.fit, apply_gradients): refused
        # before ``build``, which inside model.fit's trace would fail on symbolic tensors.
        raise ValueError("PIOOptimizer samples weights from the loss at other weights, which a "
                         "gradient does not give: build it with model=... (model.fit) or call "
                         "apply_loss(loss_fn, variables)")

    def get_config(self):
        config = super().get_config()
        weights = self.meta_weights() if self.built else self.given_meta_weights
        config.update(network=self.network, seed=self.seed,
                      meta_weights=None if weights is None else {
                          k: v.tolist() for k, v in weights.items()})
        return config


def attach(optimizer, model):
    """Makes ``model.fit`` drive PIO: its ``train_step`` hands the batch's loss to PIO.

    The loss is ``model.loss`` (as given to ``compile``) of the model run
    statelessly with candidate weights; sample weights are not supported.
    Metrics are computed on the predictions before the step, as Keras does.
    TensorFlow only: Keras's JAX trainer calls a stateless ``train_step(state,
    data)``, which this stateful replacement is not.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            "PIO in model.fit (PIOOptimizer(..., model=model)) runs on the TensorFlow backend "
            "only; on JAX, PIO meta-trains and evaluates through train.py and evaluate.py")

    def train_step(data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss_function = keras.losses.get(model.loss)
        non_trainable = [v.value for v in model.non_trainable_variables]

        def potential(weights):
            predictions, _ = model.stateless_call(weights, non_trainable, x)
            return ops.mean(loss_function(y, predictions))

        predictions = model(x)
        loss = ops.mean(loss_function(y, predictions))
        if hasattr(model, "_loss_tracker"):
            model._loss_tracker.update_state(loss)
        optimizer.apply_loss(potential, model.trainable_variables)
        return model.compute_metrics(x, y, predictions)

    model.train_step = train_step
    return model

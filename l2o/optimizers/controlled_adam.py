"""ControlledAdam: Adam whose step size a learned global controller sets, at Adam's cost.

Every parameter tensor theta (viewed as a matrix R x C, as in
``l2o.optimizers.normalized_mlp``) keeps Adam's moments; with gradient g at
step t = 1, 2, ...

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
    a  = m^ / (sqrt(v^) + eps),   m^ = m / (1 - b1^t),   v^ = v / (1 - b2^t)
    delta = -lr_t a,   log lr_t = log lr_0(t) - log(1 + (t - 1) / T)
                                  + (o if theta is a vector, else p log R)

where lr_0(t) is the centre that the learned step-size controller
(``l2o.optimizers.step_size_controller``) sets at every step from features of
the whole gradient that mean the same on every task, between
``controller_rates``, and p (the fan-in power) and o (the vectors' offset)
are meta-weights that let the step follow a layer's width, as muP predicts
(p = -1 for Adam's hidden layers); with ``layer_offsets`` false there are
none (p = o = 0), and every tensor steps at lr_0(t). Nothing runs per coordinate beyond Adam's
own arithmetic and two sums over each tensor (the gradient's squared norm
and Adam's direction's), so a step costs about what Adam's does: where a
per-coordinate network (``NormalizedMLP``) learns a direction, this rule
learns only how far to go. The controller's output layer and p and o start
at zero, so an untrained rule is Adam(``learning_rate``), step for step.

T = ``decay_time`` (steps; None, the default: no decay, T = infinity) puts the
controller's steps on an inverse-time decay, Keras's
``InverseTimeDecay(learning_rate, T, 1)``: the untrained rule is then Adam on that
schedule, and whatever the controller learns, the step size at step t stays
below ``controller_rates``' high end over 1 + (t - 1) / T. A rate that is too
large costs generalisation late in training more than early (a step size that is
right at step 100 overfits by step 1000), and a decay is the step size's answer
that needs no knowledge of the horizon.
"""

import keras
import numpy as np
from keras import ops

from l2o.numerics import safe_sqrt
from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.normalized_mlp import matrix_shape
from l2o.optimizers.step_size_controller import StepSizeController
from l2o.registry import OPTIMIZERS
from l2o.validation import check_fraction, check_keras_name, check_range


class ControlledAdamRule(UpdateRule):
    """The pure update; equations in the module docstring."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 controller_layers=(16,), controller_rates=(1e-5, 1e-1),
                 controller_linear=False, timescales=(10.0, 100.0, 1000.0, 10000.0),
                 activation="relu", layer_offsets=True, decay_time=None):
        self.learning_rate = float(learning_rate)
        self.decay_time = None if decay_time is None else float(decay_time)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.timescales = [float(t) for t in timescales]
        self.layer_offsets = bool(layer_offsets)
        self.step_size_controller = StepSizeController(
            controller_layers, controller_rates, learning_rate, timescales, activation,
            controller_linear)

    @classmethod
    def validate_config(cls, network):
        check_range("network/learning_rate", network["learning_rate"], 0.0)
        check_fraction("network/beta_1", network["beta_1"])
        check_fraction("network/beta_2", network["beta_2"])
        check_range("network/epsilon", network["epsilon"], 0.0)
        for index, timescale in enumerate(network["timescales"]):
            check_range(f"network/timescales/{index}", timescale, 0.0)
        check_keras_name("network/activation", network["activation"], "activations")
        if network["decay_time"] is not None:
            check_range("network/decay_time", network["decay_time"], 0.0)
        StepSizeController.validate_config(network)

    def init_meta_weights(self, seed):
        weights = self.step_size_controller.init_meta_weights(seed)
        if self.layer_offsets:
            weights.update({"schedule/fan_in_power": np.zeros((), np.float32),
                            "schedule/vector_log_lr": np.zeros((), np.float32)})
        return weights

    def init_state(self, params, seed):
        dtype = params[0].dtype
        return {"step": ops.zeros((), dtype),
                "m": [ops.zeros(p.shape, p.dtype) for p in params],
                "v": [ops.zeros(p.shape, p.dtype) for p in params],
                "norms": StepSizeController.init_state(dtype)}

    def update(self, meta_weights, grads, params, state):
        step = state["step"] + 1.0
        dtype = params[0].dtype
        b1, b2 = self.beta_1, self.beta_2
        first_correction = 1.0 - ops.power(ops.convert_to_tensor(b1, dtype), step)
        second_correction = 1.0 - ops.power(ops.convert_to_tensor(b2, dtype), step)
        new = {"step": step, "m": [], "v": []}
        adams = []
        for g, m, v in zip(grads, state["m"], state["v"]):
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * ops.square(g)
            new["m"].append(m)
            new["v"].append(v)
            adams.append((m / first_correction) / (safe_sqrt(v / second_correction)
                                                   + self.epsilon))
        step_features = ops.tanh(step / ops.convert_to_tensor(np.array(self.timescales), dtype))
        centre, new["norms"] = self.step_size_controller(meta_weights, grads, adams,
                                                         state["norms"], step, step_features)
        if self.decay_time is not None:
            centre = centre - ops.log(1.0 + (step - 1.0) / self.decay_time)
        if not self.layer_offsets:
            rate = ops.exp(centre)
            return [-rate * adam for adam in adams], new
        updates = []
        for p, adam in zip(params, adams):
            rows = matrix_shape(p.shape)[0]
            log_step = centre + (meta_weights["schedule/vector_log_lr"] if rows == 1 else
                                 meta_weights["schedule/fan_in_power"] * float(np.log(rows)))
            updates.append(-ops.exp(log_step) * adam)
        return updates, new


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("ControlledAdam")
class ControlledAdamOptimizer(LearnedOptimizer):
    """Keras optimiser applying a (meta-trained) ControlledAdam rule; see
    ``l2o.optimizers.controlled_adam``."""

    rule_class = ControlledAdamRule

"""NormalizedMLP: a per-parameter MLP update rule with Adam-like features and an RMS-normalised step.

After the small MLP learned optimisers of Metz et al. (2020, 2022) and the
output normalisation of Celo2 (Moudgil et al. 2026); written from the papers.
Every parameter tensor theta (viewed as a matrix R x C: a vector is 1 x n,
a kernel with more axes folds its leading axes into rows) keeps, with
gradient g at step t = 1, 2, ...

    m_b   <- b m_b + (1 - b) g                 for each b in ``momentum_decays``
    v     <- b2 v + (1 - b2) g^2
    r     <- b2 r + (1 - b2) mean_cols(g^2),   c <- b2 c + (1 - b2) mean_rows(g^2)
    v_fac  = r c^T / mean(r)                   (Adafactor's factored second moment)

with bias corrections m^_b = m_b / (1 - b^t), v^ = v / (1 - b2^t), and the same
for r and c. Per coordinate, the features are

    g, theta, m^_b (each b), m^_b / sqrt(v^ + eps) (each b), g / sqrt(v^ + eps),
    g / sqrt(v_fac + eps), m^_0 / sqrt(v_fac + eps)

each divided by its root mean square over the tensor (so that the network
sees the same scale on every tensor and task), and the step features
tanh(t / tau) for tau in ``timescales``. An MLP shared by every coordinate
(``hidden_layers``, ``activation``) maps them to a direction correction d and
a log-magnitude l. The update of the tensor is

    u     = (a + d) * exp(``magnitude_scale`` * l),   a = m^_1 / (sqrt(v^) + eps)
    delta = -lr_t * s * u / rms(u),   log lr_t = log_lr + sum_i w_i tanh(t / tau_i)

with ``step_scale: tensor_rms`` (the default), where a is Adam's direction at
the second momentum decay (0.9 by default), R the tensor's fan-in (rows of
its matrix view), s = R^p for a matrix and exp(o) for a vector (R = 1), and
rms is over the tensor: whatever the gradients' scale, each tensor moves by
lr_t s per coordinate in root mean square, which keeps
the rule stable on tasks far from those it was meta-trained on, but never
lets the step shrink as the gradients fall into noise. With ``step_scale:
adam`` the step keeps Adam's own scale instead,

    u     = (a + rms(a) d) * exp(``magnitude_scale`` * l),   delta = -lr_t * s * u

so it shrinks, as Adam's does, when the first moment falls below the
second's square root (noise-dominated or vanishing gradients), and the
correction d is measured in units of Adam's step. The fan-in power p lets
the rule learn how the step should scale with layer width (muP predicts
p = -1 for Adam's hidden layers), and the vector offset o how biases should
move relative to kernels.

``max_step_ratio`` r (adam only; unbounded by default) keeps the rule in a
trust region around Adam(``learning_rate`` = lr_0): every coordinate's step
size is bounded to [lr_0 / r, lr_0 r] and the correction to one Adam step,

    delta = -exp(log lr_0 + log r tanh((log(lr_t s) + ``magnitude_scale`` l - log lr_0) / log r))
            * (a + rms(a) tanh(d)),

so that what meta-training learnt on small tasks (which reward large steps)
cannot carry the rule outside the range of Adam rates it started from on a
task it never saw.

``controller_layers`` (null: none) adds the learned global step-size
controller of ``l2o.optimizers.step_size_controller`` (after Celo, Moudgil et
al. 2025), which sets the centre lr_0 of the step sizes above between
``controller_rates`` from features of the whole gradient at every step
(``controller_linear``: with a linear path beside its MLP); untrained, it
keeps lr_0 = ``learning_rate``. The MLP's output layer starts at zero and the
schedule weights w, p and o at zero, so an untrained rule is Adam with a
per-tensor normalised step of size exp(log_lr) = ``learning_rate``
(``tensor_rms``) or exactly Adam(``learning_rate``) (``adam``); meta-training
learns the corrections, the schedule, p and o.
"""

import keras
import numpy as np
from keras import ops

from l2o.numerics import safe_sqrt
from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.cells import init_dense
from l2o.optimizers.step_size_controller import StepSizeController
from l2o.registry import OPTIMIZERS
from l2o.validation import (
    ConfigError,
    check_choice,
    check_fraction,
    check_keras_name,
    check_range,
    check_units,
)

STEP_SCALES = ("tensor_rms", "adam")


def matrix_shape(shape):
    """The R x C view of a tensor: a scalar is 1 x 1, a vector 1 x n, leading axes fold into R."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, int(shape[0])
    return int(np.prod(shape[:-1])), int(shape[-1])


def rms(x, axis=None):
    """The root mean square of ``x`` over ``axis`` (all axes by default), axes kept."""
    return ops.sqrt(ops.mean(ops.square(x), axis=axis, keepdims=True) + 1e-12)


def rms_normalise(x, axis=None):
    """``x`` divided by its root mean square over ``axis`` (all axes by default); 0 stays 0."""
    return x / rms(x, axis)


class NormalizedMLPRule(UpdateRule):
    """The pure update; equations in the module docstring."""

    def __init__(self, hidden_layers=(32, 32), activation="relu",
                 momentum_decays=(0.5, 0.9, 0.99, 0.999), second_moment_decay=0.999,
                 timescales=(10.0, 100.0, 1000.0, 10000.0), learning_rate=1e-3,
                 magnitude_scale=0.1, epsilon=1e-8, step_scale="tensor_rms",
                 max_step_ratio=None, controller_layers=None,
                 controller_rates=(1e-5, 1e-1), controller_linear=False):
        self.hidden_layers = [int(u) for u in hidden_layers]
        self.activation = activation
        self.momentum_decays = [float(b) for b in momentum_decays]
        self.second_moment_decay = float(second_moment_decay)
        self.timescales = [float(t) for t in timescales]
        self.learning_rate = float(learning_rate)
        self.magnitude_scale = float(magnitude_scale)
        self.epsilon = float(epsilon)
        self.step_scale = step_scale
        self.max_step_ratio = None if max_step_ratio is None else float(max_step_ratio)
        self.step_size_controller = None if controller_layers is None else StepSizeController(
            controller_layers, controller_rates, learning_rate, timescales, activation,
            controller_linear)

    @classmethod
    def validate_config(cls, network):
        check_units("network/hidden_layers", network["hidden_layers"])
        check_keras_name("network/activation", network["activation"], "activations")
        decays = network["momentum_decays"]
        if len(decays) < 2:
            raise ConfigError(f"network/momentum_decays: needs at least two decays (the "
                              f"second is Adam's direction), got {decays!r}")
        for index, decay in enumerate(decays):
            check_fraction(f"network/momentum_decays/{index}", decay)
        check_fraction("network/second_moment_decay", network["second_moment_decay"])
        for index, timescale in enumerate(network["timescales"]):
            check_range(f"network/timescales/{index}", timescale, 0.0)
        check_range("network/learning_rate", network["learning_rate"], 0.0)
        check_range("network/magnitude_scale", network["magnitude_scale"], 0.0, 10.0)
        check_range("network/epsilon", network["epsilon"], 0.0)
        check_choice("network/step_scale", network["step_scale"], STEP_SCALES)
        if network["max_step_ratio"] is not None:
            check_range("network/max_step_ratio", network["max_step_ratio"], 1.0)
            if network["step_scale"] != "adam":
                raise ConfigError("network/max_step_ratio: bounds the step around Adam's, so it "
                                  "needs network/step_scale: adam")
        if network["controller_layers"] is None:
            if network["controller_linear"]:
                raise ConfigError("network/controller_linear: a path beside the controller's "
                                  "MLP, so it needs network/controller_layers")
            return
        StepSizeController.validate_config(network)

    @property
    def feature_count(self):
        return 2 + 2 * len(self.momentum_decays) + 3 + len(self.timescales)

    def init_meta_weights(self, seed):
        weights, width = {}, self.feature_count
        for index, units in enumerate(self.hidden_layers):
            weights.update(init_dense(f"mlp/{index}", width, units, seed + index))
            width = units
        output = init_dense("mlp/output", width, 2, seed + len(self.hidden_layers))
        output["mlp/output/kernel"][:] = 0.0
        weights.update(output)
        weights["schedule/log_lr"] = np.array(np.log(self.learning_rate), np.float32)
        weights["schedule/weights"] = np.zeros((len(self.timescales),), np.float32)
        weights["schedule/fan_in_power"] = np.zeros((), np.float32)
        weights["schedule/vector_log_lr"] = np.zeros((), np.float32)
        if self.step_size_controller is not None:
            weights.update(self.step_size_controller.init_meta_weights(seed + 1000))
        return weights

    def init_state(self, params, seed):
        decays = len(self.momentum_decays)
        state = {"step": ops.zeros((), params[0].dtype),
                 "m": [ops.zeros(tuple(p.shape) + (decays,), p.dtype) for p in params],
                 "v": [ops.zeros(p.shape, p.dtype) for p in params],
                 "rows": [ops.zeros((matrix_shape(p.shape)[0],), p.dtype) for p in params],
                 "cols": [ops.zeros((matrix_shape(p.shape)[1],), p.dtype) for p in params]}
        if self.step_size_controller is not None:
            state["norms"] = StepSizeController.init_state(params[0].dtype)
        return state

    def update(self, meta_weights, grads, params, state):
        step = state["step"] + 1.0
        dtype = params[0].dtype
        count = len(self.momentum_decays)
        decays = ops.convert_to_tensor(np.array(self.momentum_decays)[:, None], dtype)
        b2, eps = self.second_moment_decay, self.epsilon
        momentum_correction = 1.0 - ops.power(decays, step)
        second_correction = 1.0 - ops.power(ops.convert_to_tensor(b2, dtype), step)
        step_features = ops.tanh(step / ops.convert_to_tensor(np.array(self.timescales), dtype))
        activation = keras.activations.get(self.activation)
        # The network runs feature-major (features x coordinates): every feature a contiguous
        # row, so no column is sliced or interleaved, and the skinny products run with the
        # coordinates as the long axis, several times faster on a CPU than coordinates x features.
        # The step features are the same for every coordinate: they enter the first layer's
        # bias, and each feature's 1 / rms over the tensor enters its row of the first kernel.
        first = meta_weights["mlp/0/kernel"]
        width = self.feature_count - len(self.timescales)
        first_bias = meta_weights["mlp/0/bias"] + ops.matmul(step_features[None],
                                                             first[width:])[0]
        new = {"step": step, "m": [], "v": [], "rows": [], "cols": []}
        # First pass: the moments, the features and Adam's direction of every tensor, which
        # the controller's global features need before any step is taken.
        tensors = []
        for g, p, m, v, r, c in zip(grads, params, state["m"], state["v"], state["rows"],
                                    state["cols"]):
            rows, cols = matrix_shape(p.shape)
            flat_g, flat_p = ops.reshape(g, (1, -1)), ops.reshape(p, (1, -1))
            m = decays * ops.transpose(ops.reshape(m, (-1, count))) + (1.0 - decays) * flat_g
            squared = ops.square(g)
            v = b2 * v + (1.0 - b2) * squared
            square = ops.reshape(squared, (rows, cols))
            r = b2 * r + (1.0 - b2) * ops.mean(square, axis=1)
            c = b2 * c + (1.0 - b2) * ops.mean(square, axis=0)
            new["m"].append(ops.reshape(ops.transpose(m), tuple(p.shape) + (count,)))
            for key, value in (("v", v), ("rows", r), ("cols", c)):
                new[key].append(value)
            m_hat, v_hat = m / momentum_correction, ops.reshape(v, (1, -1)) / second_correction
            factored = ops.reshape(
                (r[:, None] * c[None, :]) / (ops.mean(r) * second_correction + 1e-30), (1, -1))
            inverse_rms = ops.rsqrt(v_hat + eps)
            inverse_factored = ops.rsqrt(factored + eps)
            raw = ops.concatenate(
                [flat_g, flat_p, m_hat, m_hat * inverse_rms, flat_g * inverse_rms,
                 flat_g * inverse_factored, m_hat[:1] * inverse_factored], axis=0)
            # 1 / rms of each feature over the tensor's coordinates.
            scale = ops.rsqrt(ops.mean(ops.square(raw), axis=1) + 1e-12)
            adam = m_hat[1] / (safe_sqrt(v_hat[0]) + eps)
            tensors.append((rows, raw, scale, adam))
        log_lr = meta_weights["schedule/log_lr"] + ops.sum(
            meta_weights["schedule/weights"] * step_features)
        base = float(np.log(self.learning_rate))
        if self.step_size_controller is not None:
            centre, new["norms"] = self.step_size_controller(
                meta_weights, grads, [adam for _, _, _, adam in tensors], state["norms"], step,
                step_features)
            log_lr = log_lr + centre - base
            base = centre
        updates = []
        for p, (rows, raw, scale, adam) in zip(params, tensors):
            kernel = ops.transpose(first[:width] * scale[:, None])
            hidden = activation(ops.matmul(kernel, raw) + first_bias[:, None])
            for index in range(1, len(self.hidden_layers)):
                hidden = activation(self.feature_major_dense(meta_weights, f"mlp/{index}",
                                                             hidden))
            out = self.feature_major_dense(meta_weights, "mlp/output", hidden)
            direction, magnitude = out[0], out[1]
            # A vector (bias, scale) has no fan-in to scale by, but its own offset.
            log_step = log_lr + (meta_weights["schedule/vector_log_lr"] if rows == 1 else
                                 meta_weights["schedule/fan_in_power"] * float(np.log(rows)))
            log_magnitude = self.magnitude_scale * magnitude
            if self.step_scale == "tensor_rms":
                update = -ops.exp(log_step) * rms_normalise(
                    (adam + direction) * ops.exp(log_magnitude))
            elif self.max_step_ratio is None:
                update = -ops.exp(log_step + log_magnitude) * (adam + rms(adam) * direction)
            else:
                bound = float(np.log(self.max_step_ratio))
                log_size = base + bound * ops.tanh((log_step + log_magnitude - base) / bound)
                update = -ops.exp(log_size) * (adam + rms(adam) * ops.tanh(direction))
            updates.append(ops.reshape(update, p.shape))
        return updates, new

    @staticmethod
    def feature_major_dense(meta_weights, prefix, inputs):
        """A dense layer on ``inputs`` laid out features x coordinates."""
        return (ops.matmul(ops.transpose(meta_weights[f"{prefix}/kernel"]), inputs)
                + meta_weights[f"{prefix}/bias"][:, None])


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("NormalizedMLP")
class NormalizedMLPOptimizer(LearnedOptimizer):
    """Keras optimiser applying a (meta-trained) NormalizedMLP rule; see ``l2o.optimizers.normalized_mlp``."""

    rule_class = NormalizedMLPRule

"""The optimisers of Wichrowska et al. (2017), "Learned Optimizers that Scale and Generalize".

Both keep, per coordinate, momentum and second moment at K timescales with
decays beta_k (0.5, 0.9, 0.99, 0.999, ... for k = 0, 1, 2, ...):

    m_k <- beta_k m_k + (1 - beta_k) g          v_k <- beta_k v_k + (1 - beta_k) g^2

(bias-corrected by 1 - beta_k^t), and a per-coordinate learning rate eta,
initialised log-uniformly in ``init_lr``, that the network changes
multiplicatively, eta <- eta * 2 sigmoid(a), so it can at most double per step.
The weights producing a start at zero (as in the authors' code), so that the
rates start unchanged from step to step, and eta never exceeds ``max_lr``:
without that cap meta-training ScaleHierarchical on MNIST let the rates grow
until the inner loss reached 1e4 within 100 steps.
The step is update = eta * d, with d the network's direction output.

ScaleBasic (coordinatewise): an LSTM stack per coordinate, fed the normalised
momenta m_k / sqrt(v_k + eps) and gradients g / sqrt(v_k + eps) at every
timescale (2K features); outputs (d, a).

ScaleHierarchical: three levels of GRUs.
    per parameter (``param_units``):  inputs m_k / sqrt(v_k + eps) (K), the
        relative log gradient magnitudes 0.5 log(v_k + eps) minus their mean
        over k (K), the log learning rate minus its mean over the tensor (1),
        and the hidden state of the coordinate's tensor GRU; outputs (d, a).
    per tensor (``tensor_units``): inputs the mean of its coordinates' new
        hidden states and the global hidden state.
    global (``global_units``): input the mean of the tensors' new hidden states.
Information flows up (pooling) within a step and down (the tensor and global
states) into the next step, so the optimiser sees every variable at once;
``LearnedOptimizer`` gives its rule all variables in one call for this reason.
The paper's attention (gradients taken at a learned offset of the parameters)
is not implemented.
"""

import keras
import numpy as np
from keras import ops

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.optimizers.cells import dense, gru, init_dense, init_gru
from l2o.optimizers.coordinatewise import CoordinatewiseLSTM
from l2o.registry import OPTIMIZERS
from l2o.streams import Stream, rng
from l2o.tree import flatten_all, unflatten_like
from l2o.validation import ConfigError, check_keras_name, check_range


def timescale_decays(count):
    return np.array([0.5] + [1.0 - 10.0 ** -k for k in range(1, count)], np.float32)


def init_moments(params, timescales, init_lr, seed):
    """Zero moments, step 0 and log learning rates drawn log-uniformly in ``init_lr``."""
    coordinates = sum(int(np.prod(p.shape)) for p in params)
    dtype = params[0].dtype
    low, high = np.log(init_lr[0]), np.log(init_lr[1])
    log_lr = rng(Stream.RULE_STATE, seed).uniform(low, high, coordinates) if high > low else \
        np.full(coordinates, low)
    return {"m": ops.zeros((coordinates, timescales), dtype),
            "v": ops.zeros((coordinates, timescales), dtype), "step": ops.zeros((), dtype),
            "log_lr": ops.convert_to_tensor(log_lr.astype(np.float32), dtype)}


def update_moments(state, grads, decays):
    """New (m, v, step) and the bias-corrected (m_hat, v_hat), each [coordinates, K]."""
    g = flatten_all(grads)[:, None]
    decays = ops.convert_to_tensor(decays, g.dtype)
    step = state["step"] + 1.0
    m = decays * state["m"] + (1.0 - decays) * g
    v = decays * state["v"] + (1.0 - decays) * ops.square(g)
    correction = 1.0 - ops.power(decays, step)
    return m, v, step, m / correction, v / correction


def zero_lr_change(weights):
    """Output column 1 (the learning-rate change) starts at zero: 2 sigmoid(0) = 1 leaves the
    rates as initialised, where random weights would double or halve them at every step."""
    weights["output/kernel"][:, 1] = 0.0
    return weights


def apply_outputs(outputs, log_lr, max_lr):
    """``(updates, new log_lr)`` from the (direction, lr change) outputs; eta <= ``max_lr``."""
    log_lr = ops.minimum(log_lr + ops.log(2.0 * ops.sigmoid(outputs[:, 1])), float(np.log(max_lr)))
    return ops.exp(log_lr) * outputs[:, 0], log_lr


def check_moments(network):
    """The settings both rules give ``init_moments``, ``update_moments`` and ``apply_outputs``."""
    # Beyond 8 timescales the decay 1 - 10^-8 rounds to 1 in float32, and its bias
    # correction 1 - 1^t to 0: every update would be NaN.
    check_range("network/timescales", network["timescales"], 0, 8)
    check_range("network/epsilon", network["epsilon"], 0.0)
    init_lr, max_lr = network["init_lr"], network["max_lr"]
    check_range("network/max_lr", max_lr, 0.0)
    if (len(init_lr) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                     and x > 0 for x in init_lr) or init_lr[0] > init_lr[1]):
        raise ConfigError(f"network/init_lr: must be [low, high] with 0 < low <= high, "
                          f"got {init_lr!r}")
    if init_lr[-1] > max_lr:
        raise ConfigError(f"network/init_lr: above network/max_lr ({max_lr}), got {init_lr!r}")


class ScaleBasicRule(CoordinatewiseLSTM):
    """Coordinatewise Wichrowska et al. optimiser; see the module docstring."""

    outputs = 2

    def __init__(self, timescales=3, init_lr=(1e-3, 1e-2), max_lr=0.1, epsilon=1e-10, **cell):
        super().__init__(**cell)
        self.timescales, self.init_lr, self.epsilon = int(timescales), tuple(init_lr), epsilon
        self.max_lr = float(max_lr)
        self.input_features = 2 * self.timescales

    @classmethod
    def validate_config(cls, network):
        super().validate_config(network)
        check_moments(network)

    def init_meta_weights(self, seed):
        return zero_lr_change(super().init_meta_weights(seed))

    def init_state(self, params, seed):
        return {"lstm": self.init_lstm_state(params),
                **init_moments(params, self.timescales, self.init_lr, seed)}

    def update(self, meta_weights, grads, params, state):
        m, v, step, m_hat, v_hat = update_moments(state, grads,
                                                  timescale_decays(self.timescales))
        scale = ops.sqrt(v_hat + self.epsilon)
        g = flatten_all(grads)[:, None]
        features = ops.concatenate([m_hat / scale, g / scale], axis=-1)
        outputs, lstm_state = self.lstm_stack(meta_weights, features, state["lstm"])
        updates, log_lr = apply_outputs(outputs, state["log_lr"], self.max_lr)
        return unflatten_like(updates, params), {"lstm": lstm_state, "m": m, "v": v,
                                                 "step": step, "log_lr": log_lr}


class ScaleHierarchicalRule(UpdateRule):
    """Hierarchical Wichrowska et al. optimiser; see the module docstring."""

    def __init__(self, param_units=10, tensor_units=5, global_units=5, timescales=5,
                 init_lr=(1e-6, 1e-2), max_lr=0.1, epsilon=1e-10, activation="tanh",
                 recurrent_activation="sigmoid", kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros"):
        self.units = {"param": int(param_units), "tensor": int(tensor_units),
                      "global": int(global_units)}
        self.timescales, self.init_lr, self.epsilon = int(timescales), tuple(init_lr), epsilon
        self.max_lr = float(max_lr)
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.initializers = {"kernel_initializer": kernel_initializer,
                             "recurrent_initializer": recurrent_initializer,
                             "bias_initializer": bias_initializer}

    @classmethod
    def validate_config(cls, network):
        for key in ("param_units", "tensor_units", "global_units"):
            check_range(f"network/{key}", network[key], 0)
        check_moments(network)
        for key in ("activation", "recurrent_activation"):
            check_keras_name(f"network/{key}", network[key], "activations")
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            check_keras_name(f"network/{key}", network[key], "initializers")

    def init_meta_weights(self, seed):
        units = self.units
        inputs = {"param": 2 * self.timescales + 1 + units["tensor"],
                  "tensor": units["param"] + units["global"], "global": units["tensor"]}
        weights = {}
        for offset, level in enumerate(("param", "tensor", "global")):
            weights.update(init_gru(level, inputs[level], units[level], seed + 10 * offset,
                                    **self.initializers))
        weights.update(init_dense("output", units["param"], 2, seed + 30,
                                  self.initializers["kernel_initializer"]))
        return zero_lr_change(weights)

    def init_state(self, params, seed):
        dtype = params[0].dtype
        coordinates = sum(int(np.prod(p.shape)) for p in params)
        return {**init_moments(params, self.timescales, self.init_lr, seed),
                "param_hidden": ops.zeros((coordinates, self.units["param"]), dtype),
                "tensor_hidden": ops.zeros((len(params), self.units["tensor"]), dtype),
                "global_hidden": ops.zeros((1, self.units["global"]), dtype)}

    def update(self, meta_weights, grads, params, state):
        sizes = [int(np.prod(p.shape)) for p in params]
        tensor_of = ops.convert_to_tensor(np.repeat(np.arange(len(sizes)), sizes), "int32")
        counts = ops.convert_to_tensor(np.array(sizes, np.float32)[:, None], params[0].dtype)

        def tensor_mean(values):
            return ops.segment_sum(values, tensor_of, num_segments=len(sizes)) / counts

        cells = {"activation": self.activation,
                 "recurrent_activation": self.recurrent_activation}
        m, v, step, m_hat, v_hat = update_moments(state, grads,
                                                  timescale_decays(self.timescales))
        log_magnitude = 0.5 * ops.log(v_hat + self.epsilon)
        relative_lr = state["log_lr"] - ops.take(tensor_mean(state["log_lr"][:, None])[:, 0],
                                                 tensor_of)
        features = ops.concatenate([
            m_hat / ops.sqrt(v_hat + self.epsilon),
            log_magnitude - ops.mean(log_magnitude, axis=-1, keepdims=True),
            relative_lr[:, None],
            ops.take(state["tensor_hidden"], tensor_of, axis=0)], axis=-1)
        param_hidden = gru(meta_weights, "param", features, state["param_hidden"], **cells)
        global_context = ops.repeat(state["global_hidden"], len(sizes), axis=0)
        tensor_hidden = gru(meta_weights, "tensor",
                            ops.concatenate([tensor_mean(param_hidden), global_context], axis=-1),
                            state["tensor_hidden"], **cells)
        global_hidden = gru(meta_weights, "global",
                            ops.mean(tensor_hidden, axis=0, keepdims=True),
                            state["global_hidden"], **cells)
        updates, log_lr = apply_outputs(dense(meta_weights, "output", param_hidden),
                                        state["log_lr"], self.max_lr)
        return unflatten_like(updates, params), {
            "m": m, "v": v, "step": step, "log_lr": log_lr, "param_hidden": param_hidden,
            "tensor_hidden": tensor_hidden, "global_hidden": global_hidden}


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("ScaleBasic")
class ScaleBasicOptimizer(LearnedOptimizer):
    """Keras optimiser applying a ScaleBasic network; see ``l2o.optimizers.scale``."""

    rule_class = ScaleBasicRule


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("ScaleHierarchical")
class ScaleHierarchicalOptimizer(LearnedOptimizer):
    """Keras optimiser applying a ScaleHierarchical network; see ``l2o.optimizers.scale``."""

    rule_class = ScaleHierarchicalRule

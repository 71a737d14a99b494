"""A learned global step-size controller, after Celo (Moudgil et al. 2025); written from the paper.

A small MLP reads, at every step, features of the whole gradient that mean
the same on every task and sets the centre lr_0 of a rule's step sizes to

    log lr_0(t) = log lo + (log hi - log lo) sigmoid(k(x_t) + logit(q)),
    q = (log ``learning_rate`` - log lo) / (log hi - log lo)

with [lo, hi] = ``rates`` and k the MLP (``layers``, ``activation``), whose
output layer starts at zero, so that an untrained controller keeps lr_0 =
``learning_rate``. With ``linear``, k(x) = MLP(x) + w^T x: a linear path (w
starting at zero) beside the MLP, so that a centre that follows a feature on
the log scale (say, falls with the gradient norm) is one weight away.

With n_t = log ||g_t|| (the norm over every tensor), EMAs f_t (decay 0.9)
and s_t (0.99) of n_t, bias-corrected, and rms(a) over every coordinate of
Adam's direction a = m^ / (sqrt(v^) + eps), the features x_t are, in decades
(logs divided by log 10),

    n_t - n_1              the gradient norm against its start
    s_t - min_{u<=t} s_u   against its running minimum (>= 0)
    f_t - s_t              its recent trend
    log rms(a)             Adam's signal-to-noise ratio (0 when the moments agree,
                           falling as noise dominates)
    tanh(t / tau)          for tau in the rule's timescales

clipped to [-5, 5]. A Keras optimiser sees gradients, not the loss, so the
controller reads the gradient norm where Celo reads the loss; the features
are invariant to the scale of the loss and of the parameters. Its state is
the gradient-norm record (n_1, f_t, s_t uncorrected, min s).
"""

import keras
import numpy as np
from keras import ops

from l2o.optimizers.cells import dense, init_dense
from l2o.validation import ConfigError, check_units, shown

# The features beside the step features (module docstring).
GRADIENT_FEATURES = 4


class StepSizeController:
    """The controller of a rule whose step sizes centre on ``learning_rate`` untrained;
    ``timescales`` are the rule's step-feature timescales. Its meta-weights are named
    ``controller/...``."""

    def __init__(self, layers, rates, learning_rate, timescales, activation="relu",
                 linear=False):
        self.layers = [int(u) for u in layers]
        self.rates = [float(r) for r in rates]
        self.learning_rate = float(learning_rate)
        self.timescales = [float(t) for t in timescales]
        self.activation = activation
        self.linear = bool(linear)

    @staticmethod
    def validate_config(network, layers_key="controller_layers", rates_key="controller_rates"):
        """Checks the controller's keys of a rule's ``network`` section."""
        check_units(f"network/{layers_key}", network[layers_key])
        rates = network[rates_key]
        if (len(rates) != 2 or not all(isinstance(r, (int, float)) and 0 < r < float("inf")
                                       for r in rates)
                or not rates[0] < network["learning_rate"] < rates[1]):
            raise ConfigError(f"network/{rates_key}: must be two finite rates [low, high] "
                              f"with low < network/learning_rate ({network['learning_rate']}) "
                              f"< high, got {shown(rates)}")

    def init_meta_weights(self, seed):
        weights, width = {}, GRADIENT_FEATURES + len(self.timescales)
        for index, units in enumerate(self.layers):
            weights.update(init_dense(f"controller/{index}", width, units, seed + index))
            width = units
        weights.update({"controller/output/kernel": np.zeros((width, 1), np.float32),
                        "controller/output/bias": np.zeros((1,), np.float32)})
        if self.linear:
            weights["controller/linear"] = np.zeros(
                (GRADIENT_FEATURES + len(self.timescales), 1), np.float32)
        return weights

    @staticmethod
    def init_state(dtype):
        return ops.zeros((4,), dtype)

    def features(self, grads, adams, norms, step, step_features):
        """``(x_t, new norms)``: the features (module docstring) and the gradient-norm record."""
        dtype = norms.dtype
        log_norm = 0.5 * ops.log(sum(ops.sum(ops.square(g)) for g in grads) + 1e-30)
        first = ops.where(step == 1.0, log_norm, norms[0])
        fast = 0.9 * norms[1] + 0.1 * log_norm
        slow = 0.99 * norms[2] + 0.01 * log_norm
        fast_hat = fast / (1.0 - ops.power(ops.convert_to_tensor(0.9, dtype), step))
        slow_hat = slow / (1.0 - ops.power(ops.convert_to_tensor(0.99, dtype), step))
        lowest = ops.where(step == 1.0, slow_hat, ops.minimum(norms[3], slow_hat))
        count = sum(int(np.prod(a.shape)) for a in adams)
        adam_rms = ops.sqrt(sum(ops.sum(ops.square(a)) for a in adams) / count + 1e-30)
        decades = ops.stack([log_norm - first, slow_hat - lowest, fast_hat - slow_hat,
                             ops.log(adam_rms)]) / float(np.log(10.0))
        features = ops.clip(ops.concatenate([decades, step_features]), -5.0, 5.0)
        return features, ops.stack([first, fast, slow, lowest])

    def __call__(self, meta_weights, grads, adams, norms, step, step_features):
        """``(log lr_0(t), new norms)``."""
        features, norms = self.features(grads, adams, norms, step, step_features)
        activation = keras.activations.get(self.activation)
        hidden = features[None]
        for index in range(len(self.layers)):
            hidden = activation(dense(meta_weights, f"controller/{index}", hidden))
        out = dense(meta_weights, "controller/output", hidden)[0, 0]
        if self.linear:
            out = out + ops.matmul(features[None], meta_weights["controller/linear"])[0, 0]
        low, high = (float(np.log(r)) for r in self.rates)
        start = (float(np.log(self.learning_rate)) - low) / (high - low)
        centre = low + (high - low) * ops.sigmoid(out + float(np.log(start / (1.0 - start))))
        return centre, norms

"""DM: the coordinatewise LSTM optimiser of Andrychowicz et al. (2016).

"Learning to learn by gradient descent by gradient descent", NeurIPS 2016.
Every coordinate of every parameter is an independent sequence through the
same small network, with its own recurrent state:

    x_t      = preprocess(g_t)                                 (2 features)
    h_t^1    = LSTM_1(x_t, h_{t-1}^1)
    h_t^2    = LSTM_2(h_t^1, h_{t-1}^2)          (``layers`` = [20, 20])
    update_t = output_scale * (W h_t^L + b)
    theta_{t+1} = theta_t + update_t

Gradient preprocessing (appendix A), with p = ``preprocess_p`` (10):

    preprocess(g) = ( log|g| / p, sign(g) )   if |g| >= e^{-p}
                    ( -1,         e^p g   )   otherwise

which hands the network the gradient's magnitude on a log scale and its sign
separately, so coordinates whose gradients differ by orders of magnitude look
alike to it.
"""

import keras
import numpy as np
from keras import ops

from l2o.config import check_keras_name, check_range, check_units
from l2o.optimizers.base import LearnedOptimizer, UpdateRule, flatten_all, unflatten_like
from l2o.optimizers.cells import dense, init_dense, init_lstm, lstm


def log_sign_preprocess(grad, p):
    """Appendix A of Andrychowicz et al.: (log|g|/p, sign g), or (-1, e^p g) for tiny g."""
    # Python floats, not numpy scalars: Keras would promote to float64.
    threshold, amplification = float(np.exp(-p)), float(np.exp(p))
    magnitude = ops.abs(grad)
    large = magnitude >= threshold
    # The maximum keeps log() finite in the branch that ``where`` discards,
    # so that no NaN leaks into the gradient.
    log_part = ops.log(ops.maximum(magnitude, threshold)) / p
    first = ops.where(large, log_part, -ops.ones_like(grad))
    second = ops.where(large, ops.sign(grad), amplification * grad)
    return ops.stack([first, second], axis=-1)


class DMRule(UpdateRule):
    """The pure DM update; see the module docstring for the equations."""

    def __init__(self, layers=(20, 20), preprocess_p=10.0, output_scale=0.1,
                 activation="tanh", recurrent_activation="sigmoid",
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True):
        self.config = {k: v for k, v in locals().items() if k != "self"}
        self.config["layers"] = list(layers)
        self.layers = list(layers)
        self.preprocess_p = float(preprocess_p)
        self.output_scale = float(output_scale)
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    @classmethod
    def validate_config(cls, network):
        check_units("network/layers", network["layers"])
        # e^p must stay finite in float32.
        check_range("network/preprocess_p", network["preprocess_p"], 0.0, 80.0)
        check_range("network/output_scale", network["output_scale"], 0.0)
        for key in ("activation", "recurrent_activation"):
            check_keras_name(f"network/{key}", network[key], "activations")
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            check_keras_name(f"network/{key}", network[key], "initializers")

    def init_meta_weights(self, seed):
        weights, input_dim = {}, 2
        for index, units in enumerate(self.layers):
            weights.update(init_lstm(
                f"lstm_{index}", input_dim, units, seed + 10 * index,
                self.config["kernel_initializer"], self.config["recurrent_initializer"],
                self.config["bias_initializer"], self.config["unit_forget_bias"]))
            input_dim = units
        weights.update(init_dense("output", input_dim, 1, seed + 10 * len(self.layers),
                                  self.config["kernel_initializer"]))
        return weights

    def init_state(self, params):
        coordinates = sum(int(np.prod(p.shape)) for p in params)
        dtype = params[0].dtype
        return [(ops.zeros((coordinates, units), dtype), ops.zeros((coordinates, units), dtype))
                for units in self.layers]

    def update(self, meta_weights, grads, params, state):
        features = log_sign_preprocess(flatten_all(grads), self.preprocess_p)
        new_state = []
        for index, (hidden, cell) in enumerate(state):
            hidden, cell = lstm(meta_weights, f"lstm_{index}", features, hidden, cell,
                                self.activation, self.recurrent_activation)
            new_state.append((hidden, cell))
            features = hidden
        steps = self.output_scale * dense(meta_weights, "output", features)[:, 0]
        return unflatten_like(steps, params), new_state


@keras.saving.register_keras_serializable(package="l2o")
class DMOptimizer(LearnedOptimizer):
    """Keras optimiser applying a (meta-trained) DM network; see ``l2o.optimizers.dm``."""

    rule_class = DMRule

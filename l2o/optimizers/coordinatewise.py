"""The part DM, RNNProp and ScaleBasic share: a stack of LSTMs run on every coordinate.

Each subclass turns gradients (and its own state) into per-coordinate
features, runs them through ``lstm_stack``, and turns the ``outputs`` linear
units of the last layer into updates. The LSTM cell options are keyword
arguments here, so every such rule has them under ``network/`` with the same
defaults.
"""

import numpy as np
from keras import ops

from l2o.optimizers.base import UpdateRule
from l2o.optimizers.cells import dense, init_dense, init_lstm, lstm
from l2o.validation import check_keras_name, check_units


class CoordinatewiseLSTM(UpdateRule):
    input_features = 1
    outputs = 1

    def __init__(self, layers=(20, 20), activation="tanh", recurrent_activation="sigmoid",
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True):
        self.layers = list(layers)
        self.cell = {"kernel_initializer": kernel_initializer,
                     "recurrent_initializer": recurrent_initializer,
                     "bias_initializer": bias_initializer, "unit_forget_bias": unit_forget_bias}
        self.activation, self.recurrent_activation = activation, recurrent_activation

    @classmethod
    def validate_config(cls, network):
        check_units("network/layers", network["layers"])
        for key in ("activation", "recurrent_activation"):
            check_keras_name(f"network/{key}", network[key], "activations")
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            check_keras_name(f"network/{key}", network[key], "initializers")

    def init_meta_weights(self, seed):
        weights, input_dim = {}, self.input_features
        for index, units in enumerate(self.layers):
            weights.update(init_lstm(f"lstm_{index}", input_dim, units, seed + 10 * index,
                                     **self.cell))
            input_dim = units
        weights.update(init_dense("output", input_dim, self.outputs,
                                  seed + 10 * len(self.layers), self.cell["kernel_initializer"]))
        return weights

    def init_lstm_state(self, params):
        coordinates = sum(int(np.prod(p.shape)) for p in params)
        dtype = params[0].dtype
        return [(ops.zeros((coordinates, units), dtype), ops.zeros((coordinates, units), dtype))
                for units in self.layers]

    def lstm_stack(self, meta_weights, features, lstm_state):
        """``(outputs [coordinates, self.outputs], new lstm state)``."""
        new_state = []
        for index, (hidden, cell) in enumerate(lstm_state):
            hidden, cell = lstm(meta_weights, f"lstm_{index}", features, hidden, cell,
                                self.activation, self.recurrent_activation)
            new_state.append((hidden, cell))
            features = hidden
        return dense(meta_weights, "output", features), new_state

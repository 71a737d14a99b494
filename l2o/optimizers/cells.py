"""Recurrent cells as pure functions of named meta-weights, shared by the learned optimisers."""

import keras
import numpy as np
from keras import ops


def seeded_initializer(name, seed):
    """A Keras initializer from its name, with its seed set where it takes one."""
    initializer = keras.initializers.get(name)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = int(seed)
        initializer = type(initializer).from_config(config)
    return initializer


def init_lstm(prefix, input_dim, units, seed, kernel_initializer="glorot_uniform",
              recurrent_initializer="orthogonal", bias_initializer="zeros",
              unit_forget_bias=True):
    """Meta-weights of one LSTM layer, gates ordered (input, forget, cell, output) as in Keras."""
    bias = np.array(seeded_initializer(bias_initializer, seed + 2)((4 * units,)), np.float32)
    if unit_forget_bias:
        bias[units:2 * units] += 1.0
    return {
        f"{prefix}/kernel": np.asarray(
            seeded_initializer(kernel_initializer, seed)((input_dim, 4 * units)), np.float32),
        f"{prefix}/recurrent_kernel": np.asarray(
            seeded_initializer(recurrent_initializer, seed + 1)((units, 4 * units)), np.float32),
        f"{prefix}/bias": bias,
    }


def lstm(weights, prefix, inputs, hidden, cell, activation="tanh",
         recurrent_activation="sigmoid"):
    """One LSTM step; returns the new (hidden, cell)."""
    activation = keras.activations.get(activation)
    recurrent_activation = keras.activations.get(recurrent_activation)
    z = (ops.matmul(inputs, weights[f"{prefix}/kernel"])
         + ops.matmul(hidden, weights[f"{prefix}/recurrent_kernel"])
         + weights[f"{prefix}/bias"])
    i, f, c, o = ops.split(z, 4, axis=-1)
    cell = recurrent_activation(f) * cell + recurrent_activation(i) * activation(c)
    return recurrent_activation(o) * activation(cell), cell


def init_dense(prefix, input_dim, units, seed, kernel_initializer="glorot_uniform"):
    return {
        f"{prefix}/kernel": np.array(
            seeded_initializer(kernel_initializer, seed)((input_dim, units)), np.float32),
        f"{prefix}/bias": np.zeros((units,), np.float32),
    }


def dense(weights, prefix, inputs):
    return ops.matmul(inputs, weights[f"{prefix}/kernel"]) + weights[f"{prefix}/bias"]


def init_gru(prefix, input_dim, units, seed, kernel_initializer="glorot_uniform",
             recurrent_initializer="orthogonal", bias_initializer="zeros"):
    """Meta-weights of one GRU layer as Keras builds it (``reset_after=True``)."""
    return {
        f"{prefix}/kernel": np.asarray(
            seeded_initializer(kernel_initializer, seed)((input_dim, 3 * units)), np.float32),
        f"{prefix}/recurrent_kernel": np.asarray(
            seeded_initializer(recurrent_initializer, seed + 1)((units, 3 * units)), np.float32),
        f"{prefix}/bias": np.array(
            seeded_initializer(bias_initializer, seed + 2)((2, 3 * units)), np.float32),
    }


def gru(weights, prefix, inputs, hidden, activation="tanh", recurrent_activation="sigmoid"):
    """One GRU step (gates update, reset, candidate; reset applied after the matmul)."""
    activation = keras.activations.get(activation)
    recurrent_activation = keras.activations.get(recurrent_activation)
    bias = weights[f"{prefix}/bias"]
    x_z, x_r, x_h = ops.split(ops.matmul(inputs, weights[f"{prefix}/kernel"]) + bias[0], 3,
                              axis=-1)
    h_z, h_r, h_h = ops.split(
        ops.matmul(hidden, weights[f"{prefix}/recurrent_kernel"]) + bias[1], 3, axis=-1)
    update = recurrent_activation(x_z + h_z)
    reset = recurrent_activation(x_r + h_r)
    candidate = activation(x_h + reset * h_h)
    return update * hidden + (1.0 - update) * candidate

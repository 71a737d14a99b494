"""Recurrent cells as pure functions of named meta-weights, shared by the learned optimisers."""

import keras
import numpy as np
from keras import ops

from l2o.streams import Stream, rng


def seeded_initializer(name, seed):
    """``shape -> float32 array`` (a new, writable one): the Keras initializer ``name`` drawn from the numpy
    stream ``META_WEIGHTS`` at ``seed``.

    Keras's own draws depend on the backend; these do not, so a run starts from
    the same meta-weights on TensorFlow and on JAX. The random initializers are
    Keras's, with their configured parameters: the variance-scaling family
    (glorot, he, lecun: n = fan_in, fan_out or their mean, per ``mode``, from the
    last two axes times the receptive field; variance scale / n, as a uniform on
    +-sqrt(3 var), a normal, or a normal truncated at 2 standard deviations whose
    standard deviation is sqrt(var) / 0.8796), orthogonal (gain times the Q of a
    Gaussian matrix's QR, signs fixed by R's diagonal), random normal, uniform and
    truncated normal. Deterministic ones (zeros, ones, constant, identity) are
    Keras's.
    """
    initializer = keras.initializers.get(name)
    if "seed" not in initializer.get_config():
        return lambda shape: np.array(initializer(shape), np.float32)
    draw = _NUMPY_DRAWS.get(type(initializer))
    if draw is None and type(initializer).__call__ is keras.initializers.VarianceScaling.__call__:
        draw = _variance_scaling  # glorot_*, he_*, lecun_*: VarianceScaling with set parameters
    if draw is None:
        raise ValueError(f"initializer {name!r} has no backend-neutral draw: use a "
                         "variance-scaling (glorot_*, he_*, lecun_*), orthogonal, random_normal, "
                         "random_uniform or truncated_normal initializer")
    return lambda shape: draw(rng(Stream.META_WEIGHTS, seed), tuple(shape), initializer) \
        .astype(np.float32)


def _truncated_normal(generator, shape, mean, stddev):
    values = generator.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = generator.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return mean + stddev * values


def _variance_scaling(generator, shape, initializer):
    receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in = (shape[-2] if len(shape) > 1 else shape[0]) * receptive_field
    fan_out = shape[-1] * receptive_field
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
    variance = initializer.scale / max(1.0, fans[initializer.mode])
    if initializer.distribution == "uniform":
        limit = np.sqrt(3.0 * variance)
        return generator.uniform(-limit, limit, shape)
    if initializer.distribution == "untruncated_normal":
        return np.sqrt(variance) * generator.standard_normal(shape)
    return _truncated_normal(generator, shape, 0.0, np.sqrt(variance) / 0.87962566103423978)


def _orthogonal(generator, shape, initializer):
    rows, columns = int(np.prod(shape[:-1])), shape[-1]
    gaussian = generator.standard_normal((max(rows, columns), min(rows, columns)))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))
    if rows < columns:
        q = q.T
    return initializer.gain * q.reshape(shape)


_NUMPY_DRAWS = {
    keras.initializers.Orthogonal: _orthogonal,
    keras.initializers.RandomNormal: lambda generator, shape, initializer: initializer.mean
    + initializer.stddev * generator.standard_normal(shape),
    keras.initializers.RandomUniform: lambda generator, shape, initializer: generator.uniform(
        initializer.minval, initializer.maxval, shape),
    keras.initializers.TruncatedNormal: lambda generator, shape, initializer: _truncated_normal(
        generator, shape, initializer.mean, initializer.stddev),
}


def init_lstm(prefix, input_dim, units, seed, kernel_initializer="glorot_uniform",
              recurrent_initializer="orthogonal", bias_initializer="zeros",
              unit_forget_bias=True):
    """Meta-weights of one LSTM layer, gates ordered (input, forget, cell, output) as in Keras."""
    bias = seeded_initializer(bias_initializer, seed + 2)((4 * units,))
    if unit_forget_bias:
        bias[units:2 * units] += 1.0
    return {
        f"{prefix}/kernel": seeded_initializer(kernel_initializer, seed)((input_dim, 4 * units)),
        f"{prefix}/recurrent_kernel": seeded_initializer(recurrent_initializer, seed + 1)(
            (units, 4 * units)),
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
        f"{prefix}/kernel": seeded_initializer(kernel_initializer, seed)((input_dim, units)),
        f"{prefix}/bias": np.zeros((units,), np.float32),
    }


def dense(weights, prefix, inputs):
    return ops.matmul(inputs, weights[f"{prefix}/kernel"]) + weights[f"{prefix}/bias"]


def init_gru(prefix, input_dim, units, seed, kernel_initializer="glorot_uniform",
             recurrent_initializer="orthogonal", bias_initializer="zeros"):
    """Meta-weights of one GRU layer as Keras builds it (``reset_after=True``)."""
    return {
        f"{prefix}/kernel": seeded_initializer(kernel_initializer, seed)((input_dim, 3 * units)),
        f"{prefix}/recurrent_kernel": seeded_initializer(recurrent_initializer, seed + 1)(
            (units, 3 * units)),
        f"{prefix}/bias": seeded_initializer(bias_initializer, seed + 2)((2, 3 * units)),
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

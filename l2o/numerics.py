"""Numerics the update rules share, written with ``keras.ops``."""

from keras import ops

# Below it, sqrt's value is irrelevant next to any epsilon a rule adds (sqrt(1e-30) = 1e-15),
# and float32 still represents it exactly enough (its smallest normal is 1.2e-38).
SQRT_FLOOR = 1e-30


def safe_sqrt(x):
    """sqrt(max(x, 1e-30)) for x >= 0: sqrt(x) wherever it matters, with a finite gradient.

    sqrt'(0) is infinite, and a second moment v = 0 (a coordinate whose gradient
    is exactly zero: a pixel that is always 0) makes backpropagation multiply it
    by dv = 2 g dg = 0. TensorFlow's gradient kernels happen to return 0 there,
    JAX's return inf * 0 = NaN; with the floor the gradient w.r.t. such an x is 0
    on both.
    """
    return ops.sqrt(ops.maximum(x, ops.cast(SQRT_FLOOR, x.dtype)))

"""Helpers on lists and nests of tensors, shared by rules, estimators and checkpoints.

``all_finite`` is the one finiteness test of the package: a loss and its
gradients are used only where it holds (a skipped meta-update, a restarted
trajectory, a kept PIO sample all follow from it). ``to_arrays`` and
``from_arrays`` are the one way a nest of tensors (a trajectory, a particle
population, an optimiser state) goes into and out of a checkpoint.
"""

import keras
import numpy as np
from keras import ops


def all_finite(tensors):
    """True where every entry of every tensor (any nest) is finite."""
    leaves = keras.tree.flatten(tensors)
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in leaves]))


def flatten_all(tensors):
    """The coordinates of a list of tensors as one vector."""
    return ops.concatenate([ops.reshape(t, (-1,)) for t in tensors], axis=0)


def unflatten_like(vector, like):
    """Splits ``vector`` into tensors shaped like the list ``like``."""
    sizes = [int(np.prod(t.shape)) for t in like]
    pieces = ops.split(vector, np.cumsum(sizes)[:-1].tolist(), axis=0) if len(like) > 1 \
        else [vector]
    return [ops.reshape(p, t.shape) for p, t in zip(pieces, like)]


def to_arrays(prefix, nest):
    """``{prefix/k: numpy array}`` for the k-th leaf of ``nest``."""
    return {f"{prefix}/{k}": np.asarray(ops.convert_to_numpy(leaf))
            for k, leaf in enumerate(keras.tree.flatten(nest))}


def from_arrays(prefix, arrays, template):
    """Inverse of ``to_arrays``: a nest shaped like ``template`` holding the saved leaves."""
    count = len(keras.tree.flatten(template))
    return keras.tree.pack_sequence_as(
        template, [ops.convert_to_tensor(arrays[f"{prefix}/{k}"]) for k in range(count)])

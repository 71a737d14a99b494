"""The ES estimator's arithmetic: centred ranks and which layers a step perturbs.

Equations in ``l2o.blackbox``'s docstring (steps 3 and the layer strategies).
"""

import numpy as np

STRATEGIES = ("all", "random", "bottom_up", "top_down")


def centred_ranks(values):
    """Ranks of ``values`` along axis 0 mapped onto [-0.5, 0.5]; ties share their mean rank.

    A 2-D array is ranked column by column (one column per objective).
    """
    values = np.asarray(values, np.float64)
    count = values.shape[0]
    if count < 2:
        return np.zeros_like(values)
    columns = values.reshape(count, -1)
    ranks = np.empty_like(columns)
    for column in range(columns.shape[1]):
        _, inverse, ties = np.unique(columns[:, column], return_inverse=True,
                                     return_counts=True)
        first_rank = np.cumsum(ties) - ties
        ranks[:, column] = (first_rank + (ties - 1) / 2)[inverse]
    return (ranks / (count - 1) - 0.5).reshape(values.shape)


def layer_schedule(strategy, n_layers, iteration, generator):
    """Indices (0-based) of the layers perturbed at step ``iteration`` (counted from 0)."""
    if strategy == "all":
        return tuple(range(n_layers))
    if strategy == "random":
        return (int(generator.integers(n_layers)),)
    if strategy == "bottom_up":
        return (iteration % n_layers,)
    if strategy == "top_down":
        return (n_layers - 1 - iteration % n_layers,)
    raise AssertionError(f"unchecked layer strategy {strategy!r}")

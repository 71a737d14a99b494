"""Tuning an L2 penalty through the run it regularises (Vicol et al. 2021, "UCI regression").

Data: scikit-learn's bundled diabetes set (Efron et al. 2004; 442 patients, 10
measurements, a disease-progression target), expanded to its degree-2 polynomial
features (65), divided by a fixed permutation into ``train_size`` training rows and
the rest for validation, features and target standardised with the training
rows' statistics. So few training rows for 65 features overfit: the penalty
has an interior optimum.

Inner problem: a linear regressor w (no bias: everything is centred) trained
by full-batch gradient descent from w_0 = 0 on the training loss plus the
penalty, the meta-parameter theta being its log coefficient,

    w_{t+1} = w_t - lr * grad_w [ mean_i (x_i . w_t - y_i)^2 + exp(theta) ||w_t||^2 ],

and the meta-objective the validation loss summed over the horizon,

    F(theta) = sum_{t=1..T} mean_j (x_j . w_t - y_j)^2    (validation rows j).

``ridge_system`` is it as a ``RecurrentSystem`` (states w [P, 65], thetas
[P, 1]) for ES and PES, and ``RecurrentSystem.meta_objective`` evaluates F on a
grid of thetas. The experiment: ``python -m benchmarks.pes_paper.ridge_penalty``.
"""

import functools

import numpy as np
from keras import ops

from l2o.systems.recurrent import RecurrentSystem


@functools.cache
def diabetes_split(train_size=60, degree=2):
    """``(x_train, y_train, x_val, y_val)`` as float32 arrays, described in the module."""
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import PolynomialFeatures

    inputs, targets = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(targets))
    features = PolynomialFeatures(degree, include_bias=False).fit_transform(inputs[order])
    targets = targets[order]
    train, val = slice(None, train_size), slice(train_size, None)
    mean, scale = features[train].mean(0), features[train].std(0)
    features = (features - mean) / scale
    targets = (targets - targets[train].mean()) / targets[train].std()
    return tuple(np.asarray(part, np.float32) for part in
                 (features[train], targets[train], features[val], targets[val]))


def ridge_system(data, learning_rate=0.001, horizon=2000):
    """The inner run and meta-objective of the module on ``data`` (``diabetes_split``'s
    four arrays) as a ``RecurrentSystem``."""
    x_train, y_train, x_val, y_val = (ops.convert_to_tensor(part) for part in data)
    rows = float(data[0].shape[0])

    def step(weights, thetas, t):
        residuals = ops.matmul(weights, ops.transpose(x_train)) - y_train[None]
        data_gradient = (2.0 / rows) * ops.matmul(residuals, x_train)
        return weights - learning_rate * (data_gradient + 2.0 * ops.exp(thetas) * weights)

    def loss(weights, thetas, t):
        residuals = ops.matmul(weights, ops.transpose(x_val)) - y_val[None]
        return ops.mean(ops.square(residuals), axis=1)

    def initial_state(seed=None, dtype="float32"):
        return ops.zeros((data[0].shape[1],), dtype)

    return RecurrentSystem(step, loss, initial_state, horizon=horizon)

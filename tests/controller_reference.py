"""The learned step-size controller's equations (``l2o.optimizers.step_size_controller``) in
float64 numpy, for the tests of the rules that use it."""

import numpy as np


def numpy_controller_features(g, adam, norms, t, step_features):
    """The controller's features of one step (module docstring), for a single tensor."""
    first, fast, slow, lowest = norms
    log_norm = np.log(np.sqrt(np.sum(g ** 2)))
    first = log_norm if t == 1 else first
    fast, slow = 0.9 * fast + 0.1 * log_norm, 0.99 * slow + 0.01 * log_norm
    fast_hat, slow_hat = fast / (1 - 0.9 ** t), slow / (1 - 0.99 ** t)
    lowest = slow_hat if t == 1 else min(lowest, slow_hat)
    decades = np.array([log_norm - first, slow_hat - lowest, fast_hat - slow_hat,
                        np.log(np.sqrt(np.mean(adam ** 2)))]) / np.log(10.0)
    features = np.clip(np.concatenate([decades, step_features]), -5.0, 5.0)
    return features, np.array([first, fast, slow, lowest])


def numpy_controller(meta, features, settings):
    """log lr_0(t) from the controller's features: its one hidden layer, then the sigmoid."""
    hidden = np.maximum(features @ meta["controller/0/kernel"] + meta["controller/0/bias"], 0.0)
    out = (hidden @ meta["controller/output/kernel"] + meta["controller/output/bias"])[0]
    if settings.get("controller_linear"):
        out = out + features @ meta["controller/linear"][:, 0]
    low, high = np.log(settings["controller_rates"])
    start = (np.log(settings["learning_rate"]) - low) / (high - low)
    return low + (high - low) / (1.0 + np.exp(-(out + np.log(start / (1.0 - start)))))

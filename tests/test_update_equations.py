"""Every learned update rule against a numpy re-implementation of its docstring's equations.

Four steps (the hierarchical rule's global state reaches the updates only at the fourth)
on two parameter tensors (9 coordinates) with random, not initial, meta-weights,
so that every weight matters (the Scale rules' learning-rate outputs start at zero), the
learning-rate cap is reached and DM's small-gradient branch is taken. The recurrent cells
are re-implemented too (gate order as in Keras).
"""

import numpy as np
from keras import ops

from l2o.optimizers.dm import DMRule
from l2o.optimizers.rnnprop import RNNPropRule
from l2o.optimizers.scale import ScaleBasicRule, ScaleHierarchicalRule

SHAPES = [(2, 3), (3,)]
GRADIENT_SCALES = [1.0, 1e-3]  # per tensor: the tensors' gradients differ in magnitude


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm(w, prefix, x, h, c):
    z = x @ w[f"{prefix}/kernel"] + h @ w[f"{prefix}/recurrent_kernel"] + w[f"{prefix}/bias"]
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def gru(w, prefix, x, h):
    bias = w[f"{prefix}/bias"]
    xz, xr, xh = np.split(x @ w[f"{prefix}/kernel"] + bias[0], 3, axis=-1)
    hz, hr, hh = np.split(h @ w[f"{prefix}/recurrent_kernel"] + bias[1], 3, axis=-1)
    z, r = sigmoid(xz + hz), sigmoid(xr + hr)
    return z * h + (1 - z) * np.tanh(xh + r * hh)


def dense(w, prefix, x):
    return x @ w[f"{prefix}/kernel"] + w[f"{prefix}/bias"]


def lstm_stack(w, features, state):
    new = []
    for index, (h, c) in enumerate(state):
        h, c = lstm(w, f"lstm_{index}", features, h, c)
        new.append((h, c))
        features = h
    return dense(w, "output", features), new


def random_meta_weights(rule, scale, rate_bias=0.0):
    """The rule's meta-weight names and shapes, filled with N(0, scale^2) (float64).

    ``rate_bias`` is added to the Scale rules' learning-rate output: positive, the rates
    grow, so that some reach the cap within the steps.
    """
    generator = np.random.default_rng(11)
    weights = {name: scale * generator.standard_normal(value.shape)
               for name, value in sorted(rule.init_meta_weights(0).items())}
    if rate_bias:
        weights["output/bias"][1] += rate_bias
    return weights


def gradient_steps(steps=4):
    """[step][tensor] gradients, with one tiny entry (DM's e^-p branch) and one zero."""
    generator = np.random.default_rng(5)
    grads = [[scale * generator.standard_normal(shape) for shape, scale in
              zip(SHAPES, GRADIENT_SCALES)] for _ in range(steps)]
    grads[0][1][0] = 1e-6
    grads[1][0][0, 0] = 0.0
    return grads


def run_rule(rule, meta_weights, grads):
    """The rule's (updates, state) after each step, as float64 numpy; and its initial state."""
    params = [ops.zeros(shape) for shape in SHAPES]
    state = rule.init_state(params, 3)
    initial = {k: ops.convert_to_numpy(v) for k, v in state.items()} \
        if isinstance(state, dict) else None
    meta = {k: ops.convert_to_tensor(v.astype(np.float32)) for k, v in meta_weights.items()}
    results = []
    for step_grads in grads:
        updates, state = rule.update(
            meta, [ops.convert_to_tensor(g.astype(np.float32)) for g in step_grads],
            params, state)
        results.append(np.concatenate([ops.convert_to_numpy(u).ravel() for u in updates]))
    return results, initial


def flat(tensors):
    return np.concatenate([t.ravel() for t in tensors])


def test_dm_update_by_hand():
    rule = DMRule(layers=[5, 4], preprocess_p=10.0, output_scale=0.1)
    w = random_meta_weights(rule, 0.5)
    grads = gradient_steps()
    got, _ = run_rule(rule, w, grads)
    p = 10.0
    state = [(np.zeros((9, u)), np.zeros((9, u))) for u in (5, 4)]
    for step, step_grads in enumerate(grads):
        g = flat(step_grads)
        large = np.abs(g) >= np.exp(-p)
        features = np.stack([
            np.where(large, np.log(np.maximum(np.abs(g), np.exp(-p))) / p, -1.0),
            np.where(large, np.sign(g), np.exp(p) * g)], axis=-1)
        outputs, state = lstm_stack(w, features, state)
        np.testing.assert_allclose(got[step], 0.1 * outputs[:, 0], rtol=1e-4, atol=1e-7)


def test_rnnprop_update_by_hand():
    beta_1, beta_2, epsilon, alpha = 0.8, 0.95, 1e-8, 0.3
    rule = RNNPropRule(layers=[5], beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, alpha=alpha)
    w = random_meta_weights(rule, 0.5)
    grads = gradient_steps()
    got, _ = run_rule(rule, w, grads)
    m = v = np.zeros(9)
    state = [(np.zeros((9, 5)), np.zeros((9, 5)))]
    for step, step_grads in enumerate(grads, start=1):
        g = flat(step_grads)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g ** 2
        scale = np.sqrt(v / (1 - beta_2 ** step)) + epsilon
        features = np.stack([m / (1 - beta_1 ** step) / scale, g / scale], axis=-1)
        outputs, state = lstm_stack(w, features, state)
        np.testing.assert_allclose(got[step - 1], alpha * np.tanh(outputs[:, 0]), rtol=1e-4,
                                   atol=1e-7)


def moments(m, v, g, step, timescales):
    """The Scale rules' moments at decays 0.5, 0.9, 0.99, ...: new (m, v), (m_hat, v_hat)."""
    decays = np.array([0.5] + [1 - 10.0 ** -k for k in range(1, timescales)])
    m = decays * m + (1 - decays) * g[:, None]
    v = decays * v + (1 - decays) * g[:, None] ** 2
    correction = 1 - decays ** step
    return m, v, m / correction, v / correction


def new_rates(outputs, log_lr, max_lr):
    """eta <- min(eta * 2 sigmoid(a), max_lr); the step is eta * d."""
    log_lr = np.minimum(log_lr + np.log(2 * sigmoid(outputs[:, 1])), np.log(max_lr))
    return np.exp(log_lr) * outputs[:, 0], log_lr


def check_rates_were_capped(rates_history, max_lr):
    """The case is only a good one if the cap bound some rates and not others."""
    final = np.exp(rates_history)
    assert np.any(np.isclose(final, max_lr, rtol=1e-6)) and np.any(final < 0.9 * max_lr)


def test_scale_basic_update_by_hand():
    timescales, epsilon, max_lr = 3, 1e-8, 0.05
    rule = ScaleBasicRule(layers=[5], timescales=timescales, init_lr=[0.01, 0.05],
                          max_lr=max_lr, epsilon=epsilon)
    w = random_meta_weights(rule, 0.5, rate_bias=0.7)
    grads = gradient_steps()
    got, initial = run_rule(rule, w, grads)
    m = v = np.zeros((9, timescales))
    log_lr = initial["log_lr"].astype(np.float64)
    assert np.ptp(log_lr) > 0.5  # drawn per coordinate in init_lr
    state = [(np.zeros((9, 5)), np.zeros((9, 5)))]
    for step, step_grads in enumerate(grads, start=1):
        g = flat(step_grads)
        m, v, m_hat, v_hat = moments(m, v, g, step, timescales)
        scale = np.sqrt(v_hat + epsilon)
        features = np.concatenate([m_hat / scale, g[:, None] / scale], axis=-1)
        outputs, state = lstm_stack(w, features, state)
        expected, log_lr = new_rates(outputs, log_lr, max_lr)
        np.testing.assert_allclose(got[step - 1], expected, rtol=1e-4, atol=1e-7)
    check_rates_were_capped(log_lr, max_lr)


def test_scale_hierarchical_update_by_hand():
    timescales, epsilon, max_lr = 3, 1e-8, 0.05
    units = {"param": 4, "tensor": 3, "global": 2}
    rule = ScaleHierarchicalRule(param_units=units["param"], tensor_units=units["tensor"],
                                 global_units=units["global"], timescales=timescales,
                                 init_lr=[0.01, 0.05], max_lr=max_lr, epsilon=epsilon)
    w = random_meta_weights(rule, 0.5, rate_bias=0.7)
    grads = gradient_steps()
    got, initial = run_rule(rule, w, grads)
    tensor_of = np.repeat([0, 1], [6, 3])  # the tensor each coordinate belongs to

    def tensor_mean(values):
        return np.stack([values[tensor_of == k].mean(axis=0) for k in range(2)])

    m = v = np.zeros((9, timescales))
    log_lr = initial["log_lr"].astype(np.float64)
    param_hidden = np.zeros((9, units["param"]))
    tensor_hidden = np.zeros((2, units["tensor"]))
    global_hidden = np.zeros((1, units["global"]))
    for step, step_grads in enumerate(grads, start=1):
        g = flat(step_grads)
        m, v, m_hat, v_hat = moments(m, v, g, step, timescales)
        log_magnitude = 0.5 * np.log(v_hat + epsilon)
        features = np.concatenate([
            m_hat / np.sqrt(v_hat + epsilon),
            log_magnitude - log_magnitude.mean(axis=1, keepdims=True),
            (log_lr - tensor_mean(log_lr)[tensor_of])[:, None],
            tensor_hidden[tensor_of]], axis=1)
        param_hidden = gru(w, "param", features, param_hidden)
        tensor_hidden = gru(w, "tensor", np.concatenate(
            [tensor_mean(param_hidden), np.repeat(global_hidden, 2, axis=0)], axis=1),
            tensor_hidden)
        global_hidden = gru(w, "global", tensor_hidden.mean(axis=0, keepdims=True),
                            global_hidden)
        expected, log_lr = new_rates(dense(w, "output", param_hidden), log_lr, max_lr)
        np.testing.assert_allclose(got[step - 1], expected, rtol=1e-4, atol=1e-7)
    check_rates_were_capped(log_lr, max_lr)

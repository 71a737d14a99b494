"""Differentiable optimisers against Keras, their gradients against finite differences,
the offline and online meta-learners against hand-written tapes, and the two examples."""

import importlib.util
import os

import keras
import numpy as np
import pytest
from keras import ops

from l2o import backend, differentiable
from l2o.differentiable import inner_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_problem(dtype, seed=0, batches=6):
    """Weights of a 3-4 tanh layer, and regression batches for it."""
    generator = np.random.default_rng(seed)
    def normal(*shape):
        return generator.normal(size=shape).astype(dtype)

    return [normal(3, 4), normal(4)], [(normal(5, 3), normal(5, 4)) for _ in range(batches)]


def regression_loss(params, batch):
    x, y = batch
    return ops.mean(ops.square(ops.tanh(ops.matmul(x, params[0]) + params[1]) - y))


# Learning rates and SGD's momentum are exact in float32: Keras keeps the learning rate in a
# float32 variable and casts the momentum through float32 (``ops.cast(0.9, "float64")`` is
# 0.8999999762), so with other values float64 trajectories would differ by about 1e-9.
CASES = {
    "adam": (lambda: keras.optimizers.Adam(0.0625), lambda: differentiable.adam(0.0625)),
    "adam_amsgrad": (lambda: keras.optimizers.Adam(0.0625, beta_1=0.8, amsgrad=True),
                     lambda: differentiable.adam(0.0625, beta_1=0.8, amsgrad=True)),
    "sgd": (lambda: keras.optimizers.SGD(0.25), lambda: differentiable.sgd(0.25)),
    "sgd_momentum": (lambda: keras.optimizers.SGD(0.25, momentum=0.875),
                     lambda: differentiable.sgd(0.25, momentum=0.875)),
    "sgd_nesterov": (lambda: keras.optimizers.SGD(0.25, momentum=0.875, nesterov=True),
                     lambda: differentiable.sgd(0.25, momentum=0.875, nesterov=True)),
    "rmsprop": (lambda: keras.optimizers.RMSprop(0.03125),
                lambda: differentiable.rmsprop(0.03125)),
    "rmsprop_centered_momentum": (
        lambda: keras.optimizers.RMSprop(0.03125, rho=0.8, momentum=0.5, centered=True),
        lambda: differentiable.rmsprop(0.03125, rho=0.8, momentum=0.5, centered=True)),
    "adagrad": (lambda: keras.optimizers.Adagrad(0.125, initial_accumulator_value=0.5),
                lambda: differentiable.adagrad(0.125, initial_accumulator_value=0.5)),
}


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-6), ("float64", 1e-12)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras_step_for_step(case, dtype, atol):
    make_keras, make_ours = CASES[case]
    initial, batches = make_problem(dtype)
    variables = [keras.Variable(p, dtype=dtype) for p in initial]
    keras_optimizer, optimizer = make_keras(), make_ours()
    keras_grads = backend.value_and_grad(lambda batch: (regression_loss(variables, batch), None),
                                         variables)
    params = [ops.convert_to_tensor(p) for p in initial]
    state = optimizer.init(params)
    for batch in batches:
        keras_optimizer.apply(keras_grads(batch)[1], variables)
        params, state, _ = inner_loop(regression_loss, params, optimizer, [batch], state)
        for ours, theirs in zip(params, variables):
            np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs),
                                       rtol=0, atol=atol)
    moved = max(np.abs(ops.convert_to_numpy(p) - start).max() for p, start in zip(params, initial))
    assert moved > 1e-2


def outer_loss_after_inner_loop(optimizer, params, batches):
    adapted, _, _ = inner_loop(regression_loss, params, optimizer, batches[:-1])
    return regression_loss(adapted, batches[-1])


def central_difference(fn, variable, step=1e-5):
    value = ops.convert_to_numpy(variable)
    variable.assign(value + step)
    upper = float(fn())
    variable.assign(value - step)
    lower = float(fn())
    variable.assign(value)
    return (upper - lower) / (2 * step)


HYPERGRADIENT_CASES = {
    # name: (the hyperparameter's value, the optimiser given it as a variable)
    "adam_learning_rate": (0.05, lambda h: differentiable.adam(h)),
    "adam_beta_1": (0.9, lambda h: differentiable.adam(0.05, beta_1=h)),
    "adam_beta_2": (0.99, lambda h: differentiable.adam(0.05, beta_2=h)),
    "sgd_nesterov_momentum": (0.8, lambda h: differentiable.sgd(0.3, momentum=h, nesterov=True)),
    "rmsprop_centered_rho": (0.9, lambda h: differentiable.rmsprop(0.02, rho=h, centered=True)),
    "adagrad_learning_rate": (0.2, lambda h: differentiable.adagrad(h)),
}


@pytest.mark.parametrize("case", sorted(HYPERGRADIENT_CASES))
def test_hypergradient_matches_finite_differences(case):
    value, make_optimizer = HYPERGRADIENT_CASES[case]
    initial, batches = make_problem("float64", batches=5)
    hyperparameter = keras.Variable(value, dtype="float64")
    params = [ops.convert_to_tensor(p) for p in initial]

    def meta_loss():
        return outer_loss_after_inner_loop(make_optimizer(hyperparameter), params, batches)

    (_, _), (gradient,) = backend.value_and_grad(lambda: (meta_loss(), None), [hyperparameter])()
    expected = central_difference(meta_loss, hyperparameter)
    assert abs(expected) > 1e-4  # the check would be vacuous otherwise
    np.testing.assert_allclose(float(gradient), expected, rtol=1e-6)


def test_callable_learning_rate_gives_gradients_through_its_computation():
    initial, batches = make_problem("float64", batches=4)
    log_rate = keras.Variable(np.log(0.05), dtype="float64")
    params = [ops.convert_to_tensor(p) for p in initial]

    def meta_loss():
        optimizer = differentiable.adam(learning_rate=lambda: ops.exp(log_rate), eps_root=1e-8)
        return outer_loss_after_inner_loop(optimizer, params, batches)

    (_, _), (gradient,) = backend.value_and_grad(lambda: (meta_loss(), None), [log_rate])()
    np.testing.assert_allclose(float(gradient), central_difference(meta_loss, log_rate),
                               rtol=1e-6)


@pytest.mark.parametrize("make_optimizer", [
    lambda: differentiable.sgd(0.3, momentum=0.9),
    lambda: differentiable.adam(0.05, eps_root=1e-8),
], ids=["sgd_momentum", "adam"])
def test_gradient_wrt_initial_weights_through_two_steps(make_optimizer):
    initial, batches = make_problem("float64", batches=3)

    def meta_loss(params):
        return outer_loss_after_inner_loop(make_optimizer(), params, batches)

    (_, _), grads = backend.value_and_grad(lambda params: (meta_loss(params), None), None)(
        [ops.convert_to_tensor(p) for p in initial])
    step = 1e-6
    for index, start in enumerate(initial):
        expected = np.zeros_like(start)
        for coordinate in np.ndindex(start.shape):
            shifted = {}
            for sign in (1, -1):
                params = [p.copy() for p in initial]
                params[index][coordinate] += sign * step
                shifted[sign] = float(meta_loss([ops.convert_to_tensor(p) for p in params]))
            expected[coordinate] = (shifted[1] - shifted[-1]) / (2 * step)
        np.testing.assert_allclose(ops.convert_to_numpy(grads[index]), expected,
                                   rtol=1e-5, atol=1e-9)


def test_offline_meta_step_is_the_mean_task_gradient():
    initial, _ = make_problem("float32")
    tasks = 4
    generator = np.random.default_rng(1)

    def task_batch():
        return (generator.normal(size=(tasks, 5, 3)).astype(np.float32),
                generator.normal(size=(tasks, 5, 4)).astype(np.float32))

    inner_batches, outer_batch = [task_batch(), task_batch()], task_batch()
    log_rate = keras.Variable(np.log(0.3), dtype="float32")
    optimizer = differentiable.sgd(lambda: ops.exp(log_rate), momentum=0.5)
    learner = differentiable.OfflineMetaLearner(
        regression_loss, initial, optimizer, keras.optimizers.SGD(1.0), [log_rate])

    def task(structure, index):
        return tuple(t[index] for t in structure)

    def mean_task_loss(params):
        losses = [regression_loss(
            inner_loop(regression_loss, params, optimizer,
                       [task(b, i) for b in inner_batches])[0], task(outer_batch, i))
            for i in range(tasks)]
        return sum(losses) / tasks, None

    start = [ops.convert_to_tensor(p) for p in initial]
    adapted = learner.adapt(inner_batches)
    for i in range(tasks):
        expected = inner_loop(regression_loss, start, optimizer,
                              [task(b, i) for b in inner_batches])[0]
        for ours, theirs in zip(adapted, expected):
            np.testing.assert_allclose(ops.convert_to_numpy(ours)[i],
                                       ops.convert_to_numpy(theirs), rtol=1e-5, atol=1e-6)

    (expected_loss, _), grads = backend.value_and_grad(mean_task_loss, None)(start)
    (_, _), (rate_grad,) = backend.value_and_grad(lambda: mean_task_loss(start), [log_rate])()
    old_rate = float(log_rate)
    loss = learner.step(inner_batches, outer_batch)
    np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-5)
    # SGD with learning rate 1: each variable moves by minus its meta-gradient.
    for variable, start_value, grad in zip(learner.params, initial, grads):
        np.testing.assert_allclose(start_value - ops.convert_to_numpy(variable),
                                   ops.convert_to_numpy(grad), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(old_rate - float(log_rate), float(rate_grad), rtol=1e-4)


def test_online_meta_step_by_hand():
    """Linear model, SGD with lr e^eta: theta_1 = theta_0 - lr g_0 on batch b_1, and
    dL(theta_1, b_2)/d eta = -lr grad L(theta_1, b_2) . g_0."""
    generator = np.random.default_rng(2)
    batches = [(generator.normal(size=(6, 3)), generator.normal(size=(6,))) for _ in range(3)]

    def linear_loss(params, batch):
        x, y = batch
        return 0.5 * ops.mean(ops.square(ops.matmul(x, params[0]) - y))

    def gradient(theta, batch):
        x, y = batch
        return x.T @ (x @ theta - y) / len(y)

    theta = generator.normal(size=3)
    log_rate = keras.Variable(np.log(0.2), dtype="float64")
    learner = differentiable.OnlineMetaLearner(
        linear_loss, [theta], differentiable.sgd(lambda: ops.exp(log_rate)),
        keras.optimizers.SGD(0.5), [log_rate])

    outer_loss, inner_losses = learner.step([batches[0]], batches[1])
    rate = 0.2
    theta_1 = theta - rate * gradient(theta, batches[0])
    np.testing.assert_allclose(ops.convert_to_numpy(learner.params[0]), theta_1, rtol=1e-12)
    np.testing.assert_allclose(float(inner_losses[0]),
                               float(linear_loss([theta], batches[0])), rtol=1e-12)
    np.testing.assert_allclose(float(outer_loss), float(linear_loss([theta_1], batches[1])),
                               rtol=1e-12)
    meta_gradient = -rate * gradient(theta_1, batches[1]) @ gradient(theta, batches[0])
    np.testing.assert_allclose(float(log_rate), np.log(rate) - 0.5 * meta_gradient, rtol=1e-12)

    # The next meta-step carries on from theta_1, with the updated rate.
    learner.step([batches[1]], batches[2])
    theta_2 = theta_1 - np.exp(np.log(rate) - 0.5 * meta_gradient) * gradient(theta_1, batches[1])
    np.testing.assert_allclose(ops.convert_to_numpy(learner.params[0]), theta_2, rtol=1e-12)


@pytest.mark.parametrize("build, error, message", [
    (lambda: differentiable.adam(beta_1=1.0), ValueError, "beta_1: must be in \\[0, 1\\)"),
    (lambda: differentiable.adam(eps_root=-1e-8), ValueError, "eps_root: must be non-negative"),
    (lambda: differentiable.sgd(momentum=1.5), ValueError, "momentum: must be in \\[0, 1\\]"),
    (lambda: differentiable.sgd(learning_rate=-0.1), ValueError, "learning_rate"),
    (lambda: differentiable.sgd(nesterov="yes"), TypeError, "nesterov: expected True or False"),
    (lambda: differentiable.rmsprop(rho=True), TypeError, "rho: expected a number"),
    (lambda: differentiable.adagrad(initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value"),
    (lambda: inner_loop(regression_loss, [], differentiable.sgd(), []), ValueError,
     "at least one batch"),
    (lambda: differentiable.OnlineMetaLearner(regression_loss, [np.zeros(2)],
                                              differentiable.sgd(), keras.optimizers.SGD(), []),
     ValueError, "meta_variables is empty"),
])
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def run_example(name, argv, capsys):
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(argv)
    return result, capsys.readouterr().out


@pytest.mark.slow
def test_maml_example_quick(capsys):
    results, output = run_example("maml_sinusoid", ["--quick"], capsys)
    assert "| MAML |" in output and "| random init |" in output and "| pretrained |" in output
    maml, random_init = results["MAML"], results["random init"]
    # Even a short meta-training makes one step from MAML's weights beat one from random ones.
    assert maml[1][0] < 0.8 * random_init[1][0]
    assert maml[1][0] < maml[0][0]


def test_online_metagradient_example_quick(capsys):
    result, output = run_example("online_metagradient", ["--quick"], capsys)
    assert "<- best" in output
    best = np.log(result["best_learning_rate"])
    assert len(result["learning_rates"]) == 2
    for start, rates in result["learning_rates"].items():
        # From below and from above, the rate ends closer to the grid's best than it started.
        assert abs(np.log(rates[-1]) - best) < 0.7 * abs(np.log(start) - best)

"""Unmodified Keras models through their own optimisation steps (``l2o.differentiable.model``):
meta-gradients against finite differences, the steps against Keras's optimisers, offline and
online windows, the compiled meta-learners on the same model, meta-training, errors, the
examples of docs/differentiable.md and the few-shot MAML example."""

import os
import re

import keras
import numpy as np
import pytest
from conftest import ROOT
from keras import ops
from test_differentiable import run_example

from l2o import backend, differentiable
from l2o.differentiable import MetaAdam, MetaModel, MetaSGD, SlidingWindow


def make_model(dtype="float64", seed=0, name="net"):
    """An ordinary Sequential regression MLP 3-4-2, built, in ``dtype``."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,), dtype=dtype),
                             keras.layers.Dense(4, activation="tanh", dtype=dtype, name="hidden"),
                             keras.layers.Dense(2, dtype=dtype, name="out")], name=name)


def make_batches(count, dtype="float64", seed=1, size=6):
    generator = np.random.default_rng(seed)
    return [(generator.normal(size=(size, 3)).astype(dtype),
             generator.normal(size=(size, 2)).astype(dtype)) for _ in range(count)]


mse = keras.losses.MeanSquaredError(dtype="float64")  # Keras losses compute in floatx otherwise


def window_meta_loss(net, optimizer, batches, offline=True):
    """K = len(batches) - 1 inner steps, the last batch's loss as the outer loss; (window, loss)."""
    with SlidingWindow(offline=offline) as window:
        for x, y in batches[:-1]:
            optimizer.step(mse(y, net(x)))
        x, y = batches[-1]
        outer = mse(y, net(x))
    return window, outer


def central_difference(fn, variable, index=(), step=1e-6):
    value = ops.convert_to_numpy(variable)
    shifted = []
    for sign in (1, -1):
        moved = value.copy()
        moved[index] += sign * step
        variable.assign(moved)
        shifted.append(float(fn()))
    variable.assign(value)
    return (shifted[0] - shifted[1]) / (2 * step)


META_VARIABLE_CASES = {
    # name: (meta-variables' values, the inner optimiser given them)
    "sgd_learning_rate": ([0.3], lambda net, v: MetaSGD(net, learning_rate=v[0])),
    "sgd_momentum_per_layer_learning_rates": (
        [0.2, 0.4], lambda net, v: MetaSGD(net, learning_rate={"hidden": v[0], "out": v[1]},
                                           momentum=0.9)),
    "adam_log_learning_rate": (
        [np.log(0.05)], lambda net, v: MetaAdam(net, learning_rate=lambda: ops.exp(v[0]),
                                                eps_root=1e-8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(META_VARIABLE_CASES))
def test_meta_gradient_through_a_sequential_models_steps_matches_finite_differences(case):
    values, make_optimizer = META_VARIABLE_CASES[case]
    model, batches = make_model(), make_batches(4)
    meta_variables = [keras.Variable(v, dtype="float64") for v in values]
    net = MetaModel(model)

    def meta_loss():
        return window_meta_loss(net, make_optimizer(net, meta_variables), batches)[1]

    window, outer = window_meta_loss(net, make_optimizer(net, meta_variables), batches)
    sources = meta_variables + model.trainable_variables
    grads = window.gradient(outer, sources)
    for variable, grad in zip(meta_variables, grads):
        expected = central_difference(meta_loss, variable)
        assert abs(expected) > 1e-3  # else the check would be vacuous
        np.testing.assert_allclose(float(grad), expected, rtol=1e-6)
    # MAML's half: the gradient with respect to the model's initial weights, every coordinate.
    for variable, grad in zip(model.trainable_variables, grads[len(meta_variables):]):
        expected = np.zeros(variable.shape)
        for index in np.ndindex(*variable.shape):
            expected[index] = central_difference(meta_loss, variable, index)
        np.testing.assert_allclose(ops.convert_to_numpy(grad), expected, rtol=1e-5, atol=1e-9)


def test_window_steps_follow_keras_optimizer_and_only_online_windows_keep_them():
    """MetaSGD with momentum takes Keras SGD's steps; an offline window leaves the model as it
    was; two online windows of two steps equal four Keras steps (momentum carried)."""
    model, batches = make_model(), make_batches(5)
    reference = make_model()
    keras_sgd = keras.optimizers.SGD(0.25, momentum=0.875)
    initial = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    net = MetaModel(model)
    inner = MetaSGD(net, learning_rate=0.25, momentum=0.875)
    loss_fn = differentiable.model_loss(reference, mse)

    with SlidingWindow(offline=True):
        for x, y in batches[:2]:
            inner.step(mse(y, net(x)))
        offline_weights = [ops.convert_to_numpy(w) for w in net.weights]
    for variable, start in zip(model.trainable_variables, initial):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), start)

    for window_batches in (batches[:2], batches[2:4]):
        with SlidingWindow(offline=False):
            for x, y in window_batches:
                inner.step(mse(y, net(x)))
    keras_grads = backend.value_and_grad(
        lambda batch: (loss_fn(reference.trainable_variables, batch), None),
        reference.trainable_variables)
    for step, batch in enumerate(batches[:4]):
        keras_sgd.apply(keras_grads(batch)[1], reference.trainable_variables)
        if step == 1:
            for ours, theirs in zip(offline_weights, reference.trainable_variables):
                np.testing.assert_allclose(ours, ops.convert_to_numpy(theirs), atol=1e-12)
    for ours, theirs in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs),
                                   atol=1e-12)
    moved = max(np.abs(ops.convert_to_numpy(v) - s).max()
                for v, s in zip(model.trainable_variables, initial))
    assert moved > 1e-2


def test_two_models_stepped_after_both_losses_are_computed():
    """Meta-Optim's MGRL order: the critic's and the actor's losses, then each optimiser steps."""
    actor, critic = make_model(name="actor"), make_model(seed=1, name="critic")
    start = {m.name: [ops.convert_to_numpy(v) for v in m.trainable_variables]
             for m in (actor, critic)}
    actor_net, critic_net = MetaModel(actor), MetaModel(critic)
    actor_sgd, critic_sgd = MetaSGD(actor_net, learning_rate=0.5), MetaSGD(critic_net,
                                                                           learning_rate=0.5)
    (x, y), = make_batches(1)
    with SlidingWindow(offline=False):
        critic_loss = mse(y, critic_net(x))
        actor_loss = mse(y, actor_net(x) * critic_net(x))
        critic_sgd.step(critic_loss)
        actor_sgd.step(actor_loss)
    for model, loss_of in ((critic, lambda p: mse(y, critic.stateless_call(p, [], x)[0])),
                           (actor, lambda p: mse(y, actor.stateless_call(p, [], x)[0]
                                                 * critic.stateless_call(
                                                     start["critic"], [], x)[0]))):
        params = [ops.convert_to_tensor(p) for p in start[model.name]]
        (_, _), grads = backend.value_and_grad(lambda p, f: (f(p), None), None)(params, loss_of)
        for variable, param, grad in zip(model.trainable_variables, params, grads):
            np.testing.assert_allclose(ops.convert_to_numpy(variable),
                                       ops.convert_to_numpy(param - 0.5 * grad), atol=1e-12)


def test_offline_window_equals_the_compiled_offline_meta_learner():
    """``model_loss`` runs OfflineMetaLearner on the same model: its meta-step (SGD 1.0 on the
    mean over tasks) moves the model's own weights and the rate by the mean of the windows'
    meta-gradients."""
    model = make_model(dtype="float32")
    tasks = [make_batches(3, dtype="float32", seed=10 + i) for i in range(2)]
    log_rate = keras.Variable(np.log(0.3), dtype="float32")
    rate = lambda: ops.exp(log_rate)
    net = MetaModel(model)
    window_grads = []
    for task in tasks:
        window, outer = window_meta_loss(net, MetaSGD(net, learning_rate=rate, momentum=0.5), task)
        window_grads.append(window.gradient(outer, [log_rate, *model.trainable_variables]))
    expected = [np.mean([ops.convert_to_numpy(g[i]) for g in window_grads], axis=0)
                for i in range(len(window_grads[0]))]

    learner = differentiable.OfflineMetaLearner(
        differentiable.model_loss(model, mse), model.trainable_variables,
        differentiable.sgd(rate, momentum=0.5), keras.optimizers.SGD(1.0), [log_rate])
    assert all(ours is theirs for ours, theirs in zip(learner.params, model.trainable_variables))
    start = [ops.convert_to_numpy(v) for v in [log_rate, *model.trainable_variables]]
    stacked = [tuple(np.stack([task[k][j] for task in tasks]) for j in range(2))
               for k in range(3)]
    learner.step(stacked[:2], stacked[2])
    for before, variable, grad in zip(start, [log_rate, *model.trainable_variables], expected):
        np.testing.assert_allclose(before - ops.convert_to_numpy(variable), grad,
                                   rtol=1e-4, atol=1e-6)


def test_a_compiled_window_gives_the_eager_meta_gradient():
    model, batches = make_model(), make_batches(3)
    rate = keras.Variable(0.3, dtype="float64")
    net = MetaModel(model)

    def meta_gradient(*batches):
        window, outer = window_meta_loss(net, MetaSGD(net, learning_rate=rate), list(batches))
        return window.gradient(outer, [rate])[0]

    eager = meta_gradient(*batches)
    assert abs(float(eager)) > 1e-3
    compiled = backend.compile_fn(meta_gradient)(*batches)
    np.testing.assert_allclose(float(compiled), float(eager), rtol=1e-12)


def regression_tasks(seed, count, shots=10):
    """Tasks y = W x (W ~ N(0, 1/3), one per task); each task a support and a query batch."""
    generator = np.random.default_rng(seed)
    tasks = []
    for _ in range(count):
        weights = generator.normal(size=(3, 2)) / np.sqrt(3)
        x = generator.normal(size=(2, shots, 3))
        tasks.append([(x[i], x[i] @ weights) for i in range(2)])
    return tasks


@pytest.mark.slow
@pytest.mark.parametrize("offline", [True, False], ids=["offline", "online"])
def test_meta_training_raises_a_too_small_learning_rate_and_lowers_the_meta_loss(offline):
    """Five SGD steps at lr 0.01 barely move a linear model: the meta-gradient raises the rate.
    Offline, the meta-loss on held-out tasks from the model's unchanged initial weights falls."""
    model = keras.Sequential([keras.Input((3,), dtype="float64"),
                              keras.layers.Dense(2, dtype="float64")])
    log_rate = keras.Variable(np.log(0.01), dtype="float64")
    net = MetaModel(model)
    inner = MetaSGD(net, learning_rate=lambda: ops.exp(log_rate))
    meta_optimizer = keras.optimizers.Adam(0.1)

    def meta_step(task):
        support, query = task
        window, outer = window_meta_loss(net, inner, [support] * 5 + [query], offline)
        meta_optimizer.apply(window.gradient(outer, [log_rate]), [log_rate])
        return outer

    def held_out_meta_loss():
        return np.mean([float(window_meta_loss(net, MetaSGD(net, learning_rate=ops.exp(log_rate)),
                                               [support] * 5 + [query])[1])
                        for support, query in regression_tasks(99, 8)])

    before = held_out_meta_loss()
    for task in regression_tasks(0, 30):
        meta_step(task)
    assert float(ops.exp(log_rate)) > 0.05
    if offline:
        assert held_out_meta_loss() < 0.5 * before


@pytest.mark.parametrize("build, error, message", [
    (lambda: MetaModel(keras.Sequential([keras.layers.Dense(2)], name="lazy")), ValueError,
     "model 'lazy' is not built"),
    (lambda: MetaSGD(make_model()), TypeError, "wrap a Keras model as MetaModel"),
    (lambda: MetaSGD(MetaModel(make_model()), learning_rate={"hidden": 0.1}), ValueError,
     r"learning_rate per layer must name exactly the layers \['hidden', 'out'\]"),
    (lambda: MetaSGD(MetaModel(make_model()), lr=0.1), TypeError, "lr"),
    (lambda: SlidingWindow(offline="yes"), TypeError, "offline must be True or False"),
    (lambda: SlidingWindow().gradient(0.0, []), RuntimeError, "has not been entered"),
])
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_misuse_inside_and_outside_windows_is_named():
    model, ((x, y),) = make_model(), make_batches(1)
    net = MetaModel(model)
    inner = MetaSGD(net, learning_rate=0.1)
    with pytest.raises(RuntimeError, match=r"MetaSGD.step: only inside `with SlidingWindow"):
        inner.step(mse(y, net(x)))
    with SlidingWindow() as window:
        stale = mse(y, net(x))
        inner.step(stale)
        with pytest.raises(ValueError, match="does not depend on the current weights of 'net'"):
            inner.step(stale)
        with pytest.raises(RuntimeError, match="windows do not nest"), SlidingWindow():
            pass
    with pytest.raises(RuntimeError, match="entered once"), window:
        pass
    frozen = keras.Variable(0.1, dtype="float64", trainable=False)
    with pytest.raises(ValueError, match="is not trainable"):
        window.gradient(stale, [frozen])
    # An error inside an online window leaves the model as it was and closes the window.
    start = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    with pytest.raises(ZeroDivisionError), SlidingWindow(offline=False):
        inner.step(mse(y, net(x)))
        raise ZeroDivisionError
    for variable, value in zip(model.trainable_variables, start):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), value)
    with SlidingWindow():
        inner.step(mse(y, net(x)))


def docs_page(*parts):
    with open(os.path.join(ROOT, "docs", *parts)) as handle:
        return handle.read()


# What the docs' first differentiable-optimiser snippet takes as given.
SNIPPET_GIVEN = {"params": [np.zeros(3, np.float32)], "grads": [np.ones(3, np.float32)]}


@pytest.mark.slow
def test_readme_examples_run_and_learn_the_learning_rate(capsys):
    blocks = re.findall(r"```python\n(.*?)```", docs_page("differentiable.md"), re.DOTALL)
    assert len(blocks) == 3
    for index, block in enumerate(blocks):
        namespace = dict(SNIPPET_GIVEN)
        code = compile(block, f"docs/differentiable.md, example {index}", "exec")
        exec(code, namespace)  # noqa: S102 (the docs' own examples)
        if "log_lr" in namespace:
            assert float(ops.exp(namespace["log_lr"])) > 0.015  # from 0.01
    assert "inner learning rate" in capsys.readouterr().out
    table = docs_page("migrating", "meta-optim.md")
    for name in ("MetaModel", "MetaSGD", "MetaAdam", "SlidingWindow", "window.gradient",
                 "examples.maml_fewshot"):
        assert name in table


@pytest.mark.slow
def test_maml_fewshot_example_quick(capsys):
    results, output = run_example("maml_fewshot", ["--quick"], capsys)
    assert "| MAML, lr 0.4 |" in output and "best lr per column" in output
    maml, baseline = results["MAML", 0.4], results["no meta-learning", 0.4]
    assert abs(maml[0][0] - 0.2) < 0.05  # unadapted: chance, 5-way
    # Even 60 meta-iterations make one step from MAML's weights beat one from the start's.
    assert maml[1][0] > baseline[1][0] + 0.05

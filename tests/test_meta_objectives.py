"""The meta-objectives of ``training/meta_objective`` (the PES paper's
``train_sum_loss``, ``train_sum_acc``, ``val_sum_loss``, ``val_sum_acc``) against numpy.

The inner problem is a 64-16-10 sigmoid MLP on the digits, batches of 32, and the learned
optimiser plain SGD with a meta-learned rate (``ScheduledSGD``, constant schedule): the
numpy twin below unrolls it by hand (float64) and scores the steps as the docstring of
``l2o.estimators.unroll`` says, with the default ``loss_args`` and ``unroll_weights: mean``.
"""

import keras
import numpy as np
import pytest
from keras import ops

from l2o.config import resolve
from l2o.estimators import learned_rule_estimator
from l2o.estimators.unroll import reference_init, reference_update
from l2o.optimizers.scheduled_sgd import ScheduledSGDRule
from l2o.problems import build
from l2o.problems.base import Problem
from l2o.validation import ConfigError

SEED, STEPS, BATCH = 3, 3, 32
EPSILON = 1e-6  # loss_args/epsilon, in the numerator too
PROBLEM = {"target": "mlp_classifier",
           "kwargs": {"layers": [16], "dataset": "digits", "batch_size": BATCH}}
NO_VALIDATION = {"target": "quadratic", "kwargs": {"dim": 2}}


def config(objective, estimator="pes", problems=(PROBLEM,)):
    return resolve({"constructor": "ScheduledSGD",
                    "network": {"schedule": "constant", "learning_rate": 5.0},
                    "problems": list(problems),
                    "training": {"estimator": estimator, "meta_objective": objective,
                                 "n_particles": 2}})


def estimator_of(resolved):
    rule = ScheduledSGDRule(**resolved["network"])
    variables = {k: keras.Variable(v, name=k) for k, v in rule.init_meta_weights(0).items()}
    problem = build(resolved["problems"][0])
    return learned_rule_estimator(rule, problem, variables, resolved, False), problem


# ---------------------------------------------------------------- the numpy twin

def forward(params, images):
    kernel, bias, out_kernel, out_bias = params
    hidden = 1.0 / (1.0 + np.exp(-(images.reshape(len(images), -1) @ kernel + bias)))
    return hidden, hidden @ out_kernel + out_bias


def loss_and_gradient(params, batch):
    images, labels = batch
    hidden, logits = forward(params, images)
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = -np.mean(np.log(probabilities[rows, labels]))
    d_logits = probabilities.copy()
    d_logits[rows, labels] -= 1.0
    d_logits /= len(labels)
    d_hidden = d_logits @ params[2].T * hidden * (1.0 - hidden)
    flat = images.reshape(len(images), -1)
    return loss, [flat.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits, d_logits.sum(0)]


def accuracy(params, batch):
    images, labels = batch
    logits = np.sort(forward(params, images)[1], axis=1)
    # No near-tie that float32 could decide otherwise.
    assert np.min(logits[:, -1] - logits[:, -2]) > 1e-4
    return np.mean(np.argmax(forward(params, images)[1], axis=1) == labels)


def by_hand(problem, objective, learning_rate, lengths):
    """The meta-losses of consecutive truncations of ``lengths`` steps from seed ``SEED``."""
    params = [p.astype(np.float64) for p in problem.init(SEED)]
    total = sum(lengths)
    batches = problem.batches(SEED, 0, total)
    validation = problem.validation_batches(SEED, 0, total + 1, BATCH)

    def step_data(data, t):
        return tuple(part[t].astype(np.float64) if part.dtype.kind == "f" else part[t]
                     for part in data)

    on_validation, measure = objective.split("_sum_")
    on_validation = on_validation == "val"
    first = step_data(validation if on_validation else batches, 0)
    initial = loss_and_gradient(params, first)[0]
    scores = []
    for t in range(total):
        batch = step_data(batches, t)
        _, gradient = loss_and_gradient(params, batch)
        before = params
        params = [p - learning_rate * g for p, g in zip(params, gradient)]
        if on_validation:
            scored, held_out = params, step_data(validation, t + 1)
        else:
            scored, held_out = before, batch
        scores.append(accuracy(scored, held_out) if measure == "acc"
                      else loss_and_gradient(scored, held_out)[0])
    values, start = [], 0
    for length in lengths:
        chunk = np.array(scores[start:start + length])
        start += length
        values.append(-np.mean(chunk) if measure == "acc"
                      else np.mean(np.log((chunk + EPSILON) / (initial + EPSILON))))
    return values


# ---------------------------------------------------------------- the objectives

@pytest.mark.parametrize("objective", ["train_sum_loss", "train_sum_acc", "val_sum_loss",
                                       "val_sum_acc"])
@pytest.mark.slow
def test_each_meta_objective_matches_its_value_by_hand(objective):
    """A fresh 3-step unroll (validation, TBPTT's path) and two truncations of ES/PES
    particles, shared and then each particle at its own step, score as the numpy twin."""
    estimator, problem = estimator_of(config(objective))
    rate = float(np.exp(estimator.meta_variables["log_learning_rate"].numpy()[0]))
    first, second = by_hand(problem, objective, rate, [STEPS, STEPS])
    if "acc" in objective:
        assert first != second  # the accuracies move: the test can tell steps apart
    got = estimator.validation_metrics(STEPS, SEED)["validation_meta_loss"]
    assert got == pytest.approx(first, rel=1e-4, abs=1e-6)

    truncations = estimator.truncations
    theta = truncations.flatten({k: v.numpy() for k, v in estimator.meta_variables.items()})
    thetas = ops.convert_to_tensor(np.stack([theta, theta]))
    fresh = truncations.init_state(SEED)
    states = keras.tree.map_structure(lambda x: ops.stack([x, x]), fresh)
    losses, after = truncations.unroll(thetas, states, np.array([0, 0]), STEPS)
    np.testing.assert_allclose(ops.convert_to_numpy(losses), [first, first], rtol=1e-4,
                               atol=1e-6)
    losses, _ = truncations.unroll(thetas, after, np.array([STEPS, STEPS]), STEPS)
    np.testing.assert_allclose(ops.convert_to_numpy(losses), [second, second], rtol=1e-4,
                               atol=1e-6)
    mixed = keras.tree.map_structure(lambda x, y: ops.stack([x, y[1]]), fresh, after)
    losses, _ = truncations.unroll(thetas, mixed, np.array([0, STEPS]), STEPS)
    np.testing.assert_allclose(ops.convert_to_numpy(losses), [first, second], rtol=1e-4,
                               atol=1e-6)


def test_val_sum_loss_meta_gradient_under_tbptt():
    """TBPTT differentiates the validation losses: two truncations' meta-losses as by hand,
    the meta-gradient of the first as the numpy twin's central difference."""
    estimator, problem = estimator_of(config("val_sum_loss", estimator="tbptt"))
    log_rate = float(estimator.meta_variables["log_learning_rate"].numpy()[0])
    expected = by_hand(problem, "val_sum_loss", np.exp(log_rate), [STEPS, STEPS])
    trajectory = estimator.init_worker_state(SEED)
    estimates = []
    for _ in range(2):
        estimate, trajectory = estimator.compute_gradient_estimate(
            trajectory, np.random.default_rng(0), STEPS)
        estimates.append(estimate)
    assert [e.loss for e in estimates] == pytest.approx(expected, rel=1e-4)
    h = 1e-4
    difference = (by_hand(problem, "val_sum_loss", np.exp(log_rate + h), [STEPS])[0]
                  - by_hand(problem, "val_sum_loss", np.exp(log_rate - h), [STEPS])[0]
                  ) / (2 * h)
    assert abs(difference) > 1e-3
    assert float(ops.convert_to_numpy(estimates[0].grads[0])[0]) == pytest.approx(
        difference, rel=1e-3)


def test_validation_minibatches_are_a_function_of_seed_and_step():
    problem = build(config("val_sum_loss")["problems"][0])
    images, labels = problem.validation_batches(SEED, 2, 4, BATCH)
    assert images.shape == (4, BATCH, 8, 8, 1) and labels.shape == (4, BATCH)
    again = build(config("val_sum_loss")["problems"][0])  # a fresh instance: no cache
    for offset in range(4):
        one_images, one_labels = again.validation_batches(SEED, 2 + offset, 1, BATCH)
        np.testing.assert_array_equal(one_images[0], images[offset])
        np.testing.assert_array_equal(one_labels[0], labels[offset])
    x_val, _ = problem.validation_batch()
    rows = {row.tobytes(): index for index, row in enumerate(x_val)}
    assert len(rows) == len(x_val)  # the digits' validation images are distinct
    picked = [[rows[image.tobytes()] for image in step] for step in images]
    assert all(len(set(step)) == BATCH for step in picked)  # drawn without replacement
    assert len({tuple(step) for step in picked}) == 4  # each step its own
    other_seed = problem.validation_batches(SEED + 1, 2, 1, BATCH)[0][0]
    assert not np.array_equal(other_seed, images[0])


# ---------------------------------------------------------------- what the config refuses

@pytest.mark.parametrize("objective", ["train_sum_acc", "val_sum_acc"])
def test_an_accuracy_objective_with_tbptt_is_refused_in_one_line(objective):
    with pytest.raises(ConfigError) as error:
        config(objective, estimator="tbptt")
    message = str(error.value)
    assert message.startswith(f"training/meta_objective: {objective} scores accuracy")
    assert "\n" not in message and "es or pes" in message
    config(objective, estimator="es")  # the ES estimators take it


@pytest.mark.parametrize("objective, problems, message", [
    ("val_sum_loss", [NO_VALIDATION],
     "problems/0/target: quadratic has no validation, which training/meta_objective val_sum_loss"),
    ("train_sum_acc", [PROBLEM, NO_VALIDATION], "problems/1/target: quadratic has no accuracy,"),
    ("val_sum_acc", [NO_VALIDATION],
     "problems/0/target: quadratic has no accuracy and no validation,"),
    ("val_sum_loss", [{"target": "task_family", "kwargs": {"members": [PROBLEM,
                                                                      NO_VALIDATION]}}],
     "problems/0/target: task_family has no validation,"),
])
def test_a_problem_without_what_the_objective_scores_is_refused(objective, problems, message):
    with pytest.raises(ConfigError) as error:
        config(objective, problems=problems)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_family_of_classifiers_or_its_classifier_member_takes_a_validation_objective():
    members = [PROBLEM, NO_VALIDATION]
    config("val_sum_acc", problems=[{"target": "task_family",
                                     "kwargs": {"members": [PROBLEM, PROBLEM]}}])
    config("val_sum_acc", problems=[{"target": "task_family",
                                     "kwargs": {"members": members, "member": 0}}])
    with pytest.raises(ConfigError, match="problems/0/target: task_family has no accuracy"):
        config("val_sum_acc", problems=[{"target": "task_family",
                                         "kwargs": {"members": members, "member": 1}}])


# ---------------------------------------------------------------- no training batch is scored

class MarkedBatches(Problem):
    """The digits MLP of ``PROBLEM`` whose loss carries a constant 1000 on every training
    batch and 0 on every validation batch (gradients unchanged): a meta-loss that scored
    any training batch would show it."""

    def __init__(self):
        self.inner = build(config("val_sum_loss")["problems"][0])

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def init(self, seed):
        return self.inner.init(seed)

    def batches(self, seed, start, count):
        return (*self.inner.batches(seed, start, count), np.ones((count,), np.float32))

    def validation_batch(self):
        images, labels = self.inner.validation_batch()
        return images, labels, np.zeros((len(labels),), np.float32)

    def loss(self, params, batch):
        images, labels, mark = batch
        return self.inner.loss(params, (images, labels)) + 1000.0 * ops.mean(
            ops.stop_gradient(mark))


@pytest.mark.parametrize("estimator_name", ["tbptt", "pes"])
def test_the_validation_objective_scores_no_training_batch(estimator_name):
    resolved = config("val_sum_loss", estimator=estimator_name)
    rule = ScheduledSGDRule(**resolved["network"])
    values = {}
    for name, problem in (("plain", build(resolved["problems"][0])),
                          ("marked", MarkedBatches())):
        variables = {k: keras.Variable(v, name=k) for k, v in rule.init_meta_weights(0).items()}
        estimator = learned_rule_estimator(rule, problem, variables, resolved, False)
        values[name] = estimator.validation_metrics(STEPS, SEED)["validation_meta_loss"]
    assert values["marked"] == pytest.approx(values["plain"], rel=1e-5)
    # The mark is seen where training batches are scored: the test can fail.
    resolved = config("train_sum_loss", estimator=estimator_name)
    variables = {k: keras.Variable(v, name=k) for k, v in rule.init_meta_weights(0).items()}
    marked = learned_rule_estimator(rule, MarkedBatches(), variables, resolved, False)
    assert abs(marked.validation_metrics(STEPS, SEED)["validation_meta_loss"] - values["plain"]) > 0.1


# ---------------------------------------------------------------- the floor

FLOOR_WEIGHT, FLOOR_RATE = 2.0, 0.02


def adam_by_hand(params, batches, length, rate, measure_on):
    """The reference Adam (Keras's, its defaults) by hand: the losses that ``measure_on(t,
    before, after)`` scores at each of ``length`` steps."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    scores = []
    for t in range(length):
        _, gradient = loss_and_gradient(params, batches(t))
        step_rate = rate * np.sqrt(1 - 0.999 ** (t + 1)) / (1 - 0.9 ** (t + 1))
        m = [0.9 * a + 0.1 * g for a, g in zip(m, gradient)]
        v = [0.999 * b + 0.001 * g * g for b, g in zip(v, gradient)]
        before = params
        params = [p - step_rate * a / (np.sqrt(b) + 1e-7) for p, a, b in zip(params, m, v)]
        scores.append(measure_on(t, before, params))
    return np.array(scores)


@pytest.mark.parametrize("objective", ["train_sum_loss", "val_sum_loss"])
def test_the_floor_adds_the_hinge_against_a_reference_adam_by_hand(objective):
    """With ``training/floor_weight``, a fresh unroll (validation) and two PES truncations
    score the objective plus lambda * max(0, log(s_t + eps) - log(s^ref_t + eps)) per step
    (mean weights), s^ref the scores of Adam at ``floor_learning_rate`` run from the same
    start on the same batches."""
    resolved = resolve(config(objective), [f"training/floor_weight={FLOOR_WEIGHT}",
                                           f"training/floor_learning_rate={FLOOR_RATE}"])
    estimator, problem = estimator_of(resolved)
    rate = float(np.exp(estimator.meta_variables["log_learning_rate"].numpy()[0]))
    plain = by_hand(problem, objective, rate, [STEPS, STEPS])

    total = 2 * STEPS
    batches = problem.batches(SEED, 0, total)
    validation = problem.validation_batches(SEED, 0, total + 1, BATCH)

    def at(data, t):
        return tuple(part[t].astype(np.float64) if part.dtype.kind == "f" else part[t]
                     for part in data)

    def measure(t, before, after):
        if objective == "val_sum_loss":
            return loss_and_gradient(after, at(validation, t + 1))[0]
        return loss_and_gradient(before, at(batches, t))[0]

    start = [p.astype(np.float64) for p in problem.init(SEED)]
    reference = adam_by_hand(start, lambda t: at(batches, t), total, FLOOR_RATE, measure)
    # The learned rule's own scores, step by step (by_hand gives only their sums).
    sgd, params = [], start
    for t in range(total):
        _, gradient = loss_and_gradient(params, at(batches, t))
        before, params = params, [p - rate * g for p, g in zip(params, gradient)]
        sgd.append(measure(t, before, params))
    hinge = FLOOR_WEIGHT * np.maximum(0.0, np.log(np.array(sgd) + EPSILON)
                                      - np.log(reference + EPSILON))
    expected = [plain[k] + np.mean(hinge[k * STEPS:(k + 1) * STEPS]) for k in range(2)]
    assert min(expected[k] - plain[k] for k in range(2)) > 1e-3  # the hinge is active
    got = estimator.validation_metrics(STEPS, SEED)["validation_meta_loss"]
    assert got == pytest.approx(expected[0], rel=1e-4, abs=1e-6)

    truncations = estimator.truncations
    theta = truncations.flatten({k: v.numpy() for k, v in estimator.meta_variables.items()})
    thetas = ops.convert_to_tensor(np.stack([theta, theta]))
    states = keras.tree.map_structure(lambda x: ops.stack([x, x]),
                                      truncations.init_state(SEED))
    for k in range(2):
        losses, states = truncations.unroll(thetas, states, np.array([k * STEPS] * 2), STEPS)
        np.testing.assert_allclose(ops.convert_to_numpy(losses), [expected[k]] * 2,
                                   rtol=1e-4, atol=1e-6)


def test_the_floor_reference_steps_as_keras_adam():
    """``reference_update`` is Keras's Adam step for step (golden values from Keras itself)."""
    generator = np.random.default_rng(0)
    start = [generator.normal(size=(3, 2)).astype(np.float32),
             generator.normal(size=(2,)).astype(np.float32)]
    grads = [[generator.normal(size=p.shape).astype(np.float32) for p in start]
             for _ in range(5)]
    variables = [keras.Variable(p) for p in start]
    adam = keras.optimizers.Adam(0.05)
    params, state = [ops.convert_to_tensor(p) for p in start], reference_init(start)
    for step_grads in grads:
        adam.apply([ops.convert_to_tensor(g) for g in step_grads], variables)
        updates, state = reference_update([ops.convert_to_tensor(g) for g in step_grads],
                                          state, 0.05)
        params = [p + u for p, u in zip(params, updates)]
        for mine, theirs in zip(params, variables):
            np.testing.assert_allclose(ops.convert_to_numpy(mine), theirs.numpy(), rtol=1e-5,
                                       atol=1e-6)
    assert not np.allclose(ops.convert_to_numpy(params[0]), start[0])


def test_a_pes_population_with_the_floor_resumes_exactly():
    """The reference run is part of each particle's checkpointed state: a population
    reloaded from its arrays estimates what the uninterrupted one does."""
    resolved = resolve(config("val_sum_loss"), ["training/floor_weight=1.0",
                                                "estimator/horizon=4"])
    estimator, _ = estimator_of(resolved)
    theta = estimator.truncations.flatten(
        {k: v.numpy() for k, v in estimator.meta_variables.items()})
    population = estimator.init_worker_state(0)
    population.estimate(theta, np.random.default_rng(1), 2)
    assert "reference" in estimator.truncations.init_state(0)
    arrays = population.arrays()
    resumed = estimator.load_worker_state(arrays, {})
    expected = population.estimate(theta, np.random.default_rng(2), 2)
    got = resumed.estimate(theta, np.random.default_rng(2), 2)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1] == expected[1]


@pytest.mark.parametrize("estimator, overrides, message", [
    ("tbptt", ["training/floor_weight=1.0"],
     "training/floor_weight: the floor's reference run is carried by the particle estimators"),
    ("pes", ["training/meta_objective=val_sum_acc", "training/floor_weight=1.0"],
     "training/floor_weight: the floor compares losses"),
    ("pes", ["training/floor_weight=-1.0"], "training/floor_weight"),
    ("pes", ["training/floor_learning_rate=0.0"], "training/floor_learning_rate: must be > 0"),
])
def test_a_bad_floor_is_refused_in_one_line(estimator, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        resolve(config("val_sum_loss", estimator=estimator), overrides)
    assert "\n" not in str(error.value)

"""training/meta_batch: sequential meta-updates (one per truncation, the trajectories in turn)
against averaged ones (every trajectory's truncation at the same meta-weights, one update from
their mean meta-gradient), in one process."""

import numpy as np
import pytest
from conftest import tiny_config

from l2o.config import resolve
from l2o.streams import Stream, rng, seed_from
from l2o.trainer import MetaTrainer


def two_task_config(tmp_path, **training):
    """Two digits MLPs, one trajectory each; SGD(1) makes an update minus the gradient."""
    mlp = {"target": "mlp_classifier", "kwargs": {"dataset": "digits", "batch_size": 32}}
    problems = [{**mlp, "kwargs": {**mlp["kwargs"], "layers": [8]}},
                {**mlp, "kwargs": {**mlp["kwargs"], "layers": [6]}}]
    return resolve(tiny_config(tmp_path, problems=problems,
                               optimizer={"class_name": "SGD", "config": {"learning_rate": 1.0}},
                               training={"depth": 1, **training}))


@pytest.mark.slow
def test_an_averaged_meta_update_is_minus_the_mean_of_the_tasks_meta_gradients(tmp_path):
    trainer = MetaTrainer(two_task_config(tmp_path, meta_batch="averaged"))
    reference = MetaTrainer(two_task_config(tmp_path))
    initial = trainer.meta_weights()
    gradients = []
    for problem, estimator in enumerate(reference.estimators):
        keys = (0, 0, 0, problem, 0)  # seed, period, epoch, problem, slot
        worker = estimator.init_worker_state(seed_from(rng(Stream.TRAJECTORY, *keys)))
        estimate, _ = estimator.compute_gradient_estimate(
            worker, rng(Stream.TRUNCATION, *keys, 0), 5)
        assert estimate.usable
        gradients.append([np.asarray(g) for g in estimate.grads])

    losses = trainer.train_epoch(0, 0, lambda generator: 5)

    assert len(losses["meta_loss"]) == 1
    for index, (name, value) in enumerate(trainer.meta_weights().items()):
        expected = initial[name] - (gradients[0][index] + gradients[1][index]) / 2
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7, err_msg=name)
    assert max(float(np.max(np.abs(trainer.meta_weights()[name] - initial[name])))
               for name in initial) > 1e-4


@pytest.mark.slow
def test_sequential_meta_updates_follow_one_another(tmp_path):
    """The default: the second task's truncation meets the meta-weights the first one moved."""
    trainer = MetaTrainer(two_task_config(tmp_path))
    averaged = MetaTrainer(two_task_config(tmp_path, meta_batch="averaged"))
    losses = trainer.train_epoch(0, 0, lambda generator: 5)
    averaged.train_epoch(0, 0, lambda generator: 5)
    assert len(losses["meta_loss"]) == 2
    assert not trainer.runner.states  # trajectories not kept (training/persistent false)
    gaps = [float(np.max(np.abs(value - averaged.meta_weights()[name])))
            for name, value in trainer.meta_weights().items()]
    assert max(gaps) > 1e-4


def one_task_config(tmp_path):
    mlp = {"target": "mlp_classifier", "kwargs": {"dataset": "digits", "batch_size": 32,
                                                  "layers": [8]}}
    return resolve(tiny_config(tmp_path, problems=[mlp], training={"depth": 3}))


def test_a_truncation_and_its_meta_update_in_one_compiled_call_equal_the_two_apart(tmp_path):
    fused = MetaTrainer(one_task_config(tmp_path))
    apart = MetaTrainer(one_task_config(tmp_path))
    apart.fused = set()  # the trainer applies each estimate itself
    assert fused.fused == {0}

    losses = fused.train_epoch(0, 0, lambda generator: 4)
    assert apart.train_epoch(0, 0, lambda generator: 4) == losses
    assert len(losses["meta_loss"]) == 3
    for name, value in apart.meta_weights().items():
        np.testing.assert_array_equal(fused.meta_weights()[name], value, err_msg=name)
    for mine, theirs in zip(fused.meta_optimizer.variables, apart.meta_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    assert int(np.asarray(fused.meta_optimizer.iterations)) == 3


def test_a_non_finite_truncation_leaves_the_meta_weights_and_their_optimiser_alone(tmp_path):
    trainer = MetaTrainer(one_task_config(tmp_path))
    estimator = trainer.estimators[0]
    worker = estimator.init_worker_state(0)
    broken = worker.__class__(**{**vars(worker),
                                 "params": [p * np.nan for p in worker.params]})
    before = trainer.meta_weights()
    slots = [np.asarray(v).copy() for v in trainer.meta_optimizer.variables]

    estimate, _ = estimator.compute_gradient_estimate(broken, rng(Stream.TRUNCATION, 0), 4,
                                                      update=True)

    assert estimate.applied and not estimate.usable
    for name, value in trainer.meta_weights().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    for variable, slot in zip(trainer.meta_optimizer.variables, slots):
        np.testing.assert_array_equal(np.asarray(variable), slot)
    # The same call with a finite trajectory does move them.
    estimate, _ = estimator.compute_gradient_estimate(worker, rng(Stream.TRUNCATION, 0), 4,
                                                      update=True)
    assert estimate.usable and int(np.asarray(trainer.meta_optimizer.iterations)) == 1
    assert any(np.any(value != before[name]) for name, value in trainer.meta_weights().items())

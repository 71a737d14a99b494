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

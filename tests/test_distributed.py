"""Ray workers (l2o/distributed.py) on a two-node local cluster: ES/PES particles, TBPTT tasks
and black-box ES candidates give what one process gives, checkpoints move between numbers of
workers, a killed worker is restarted; and the `distributed` config section."""

import itertools
import json
import os
import signal
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from conftest import tiny_config

from l2o import checkpoints, distributed
from l2o.config import resolve

ray = pytest.importorskip("ray")

PARTICLES = {"n_particles": 4, "sigma": 0.1, "horizon": 10}


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each on this machine (loopback only), shared by the module."""
    from ray.cluster_utils import Cluster

    with distributed.loopback():
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 * 2 ** 20})
        cluster.add_node(num_cpus=1, object_store_memory=80 * 2 ** 20)
        ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def particle_config(tmp_path, estimator, workers=0, address=None, **sections):
    options = {**PARTICLES, "stagger": "breakstep"} if estimator == "pes" else PARTICLES
    return resolve(tiny_config(tmp_path, training={"depth": 3, "persistent": True},
                               estimator_constructor=estimator, estimator=options,
                               distributed={"workers": workers, "address": address},
                               **sections))


def assert_same_state(expected, actual):
    """Each meta-weight tensor to 1e-5 relative in norm; the particles' step counts and noise
    exactly; the rest (meta-optimiser slots, inner states) to 1e-3 relative in norm.

    Both sides draw the same noise and batches, but a batched call of 4 particles and two of
    2 round differently (float32, last bits), and ES differences of nearby losses magnify
    that in the gradient (the meta-optimiser's moments). Adam's normalised step then moves a
    weight whose gradient is near 0 by a visible fraction of a step (2.7e-6 on one of 1600
    ES weights, seen in CI), and a state near 0 by a visible fraction of itself (1.7e-3 on
    one of 48,800), so tensors are compared as wholes, not elementwise.
    """
    (expected, expected_info), (actual, actual_info) = expected, actual
    assert expected_info == actual_info
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        if name.endswith(("/steps", "/step", "/accumulated")):
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
            continue
        tolerance = 1e-5 if name.startswith("meta/") else 1e-3
        error = np.linalg.norm(np.asarray(actual[name], np.float64) - value)
        assert error <= tolerance * np.linalg.norm(value) + 1e-8, (
            f"{name}: {error:.2e} apart, {np.linalg.norm(value):.2e} in norm")


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["pes", "es"])
def test_workers_give_the_meta_weights_of_one_process(cluster, tmp_path, estimator):
    """Acceptance 1: 3 meta-updates on 2 workers (one per node) == in one process, to 1e-5;
    their checkpoint state is the same arrays, and each resumes from the other's."""
    from l2o.trainer import MetaTrainer

    single = MetaTrainer(particle_config(tmp_path, estimator))
    remote = MetaTrainer(particle_config(tmp_path, estimator, 2, cluster.address))
    try:
        assert len({node for _, _, node in remote.remote.where()}) == 2
        initial = single.meta_weights()
        for trainer in (single, remote):
            trainer.train_epoch(0, 0, lambda generator: 5)
        assert_same_state(single.state_arrays(), remote.state_arrays())
        moved = max(float(np.max(np.abs(value - initial[name])))
                    for name, value in single.meta_weights().items())
        assert moved > 1e-4
        # Resume across numbers of shards: 1 -> 2 and 2 -> 1.
        single_state, remote_state = single.state_arrays(), remote.state_arrays()
        single.load_state_arrays(*remote_state)
        remote.load_state_arrays(*single_state)
        for trainer in (single, remote):
            trainer.train_epoch(0, 1, lambda generator: 5)
        assert_same_state(single.state_arrays(), remote.state_arrays())
    finally:
        remote.close()


def task_config(tmp_path, workers=0, address=None):
    """TBPTT on two digits MLPs (two tasks), their meta-gradients averaged."""
    mlp = {"target": "mlp_classifier", "kwargs": {"dataset": "digits", "batch_size": 32}}
    problems = [{**mlp, "kwargs": {**mlp["kwargs"], "layers": [8]}},
                {**mlp, "kwargs": {**mlp["kwargs"], "layers": [6]}}]
    return resolve(tiny_config(tmp_path, problems=problems, training={
        "depth": 3, "persistent": True, "meta_batch": "averaged"},
        distributed={"workers": workers, "address": address}))


@pytest.mark.slow
def test_tbptt_tasks_on_workers_give_the_meta_weights_of_one_process(cluster, tmp_path):
    """Acceptance 1, multi-task TBPTT: each worker keeps one task's trajectory; 3 averaged
    meta-updates == in one process, to 1e-5; checkpoints gather and resume across counts; a
    killed worker's trajectory starts afresh."""
    from l2o.task_runners import DistributedTasks
    from l2o.trainer import MetaTrainer

    single = MetaTrainer(task_config(tmp_path))
    remote = MetaTrainer(task_config(tmp_path, 2, cluster.address))
    try:
        assert isinstance(remote.runner, DistributedTasks)
        assert len({node for _, _, node in remote.remote.where()}) == 2
        initial = single.meta_weights()
        for trainer in (single, remote):
            losses = trainer.train_epoch(0, 0, lambda generator: 5)
            assert len(losses["meta_loss"]) == 3
        single_state, remote_state = single.state_arrays(), remote.state_arrays()
        assert [entry["step"] for entry in remote_state[1]["workers"]] == [15, 15]
        assert_same_state(single_state, remote_state)
        moved = max(float(np.max(np.abs(value - initial[name])))
                    for name, value in single.meta_weights().items())
        assert moved > 1e-4
        # Resume across numbers of workers: 1 -> 2 and 2 -> 1.
        single.load_state_arrays(*remote_state)
        remote.load_state_arrays(*single_state)
        for trainer in (single, remote):
            trainer.train_epoch(0, 1, lambda generator: 5)
        assert_same_state(single.state_arrays(), remote.state_arrays())
        # kill -9 of the worker keeping task 1: its trajectory restarts, the run goes on.
        os.kill(remote.remote.where()[1][1], signal.SIGKILL)
        losses = remote.train_epoch(0, 2, lambda generator: 5)
        assert remote.worker_restarts() == 1 and len(losses["meta_loss"]) == 3
        arrays, info = remote.state_arrays()
        assert [entry["step"] for entry in info["workers"]] == [45, 10]
        assert all(np.all(np.isfinite(value)) for value in arrays.values())
    finally:
        remote.close()


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_goes_on(cluster, tmp_path):
    """Acceptance 2: kill -9 of a worker in period 2; its particles restart, the run finishes,
    summary.jsonl records the restart, the checkpoint is finite, validation as without it."""
    from l2o.strategies import STRATEGIES
    from l2o.trainer import MetaTrainer

    strategy = {"num_periods": 2, "epochs_per_period": 1}
    config = particle_config(tmp_path / "killed", "pes", 2, cluster.address, strategy=strategy)
    config["estimator"]["stagger"] = "lockstep"
    trainer = MetaTrainer(config)
    estimator, calls = trainer.estimators[0], itertools.count()
    estimate = estimator.compute_gradient_estimate
    killed = trainer.remote.where()[1]

    def kill_then_estimate(*args, **kwargs):
        if next(calls) == 4:  # period 2, second truncation
            os.kill(killed[1], signal.SIGKILL)
        return estimate(*args, **kwargs)

    estimator.compute_gradient_estimate = kill_then_estimate
    try:
        STRATEGIES["Simple"](**config["strategy"]).run(trainer, config["directory"])
        assert trainer.remote.where()[1][1] != killed[1]
    finally:
        trainer.close()
    records = [json.loads(line) for line in
               (tmp_path / "killed" / "summary.jsonl").read_text().splitlines()]
    assert [record["worker_restarts"] for record in records] == [0, 1]
    arrays, _ = checkpoints.load(str(tmp_path / "killed" / "checkpoints" / "last.npz"))
    assert all(np.all(np.isfinite(value)) for value in arrays.values())
    # Worker 1 held pair 1 (particles 1 and 3): they restarted at the kill, the others did not.
    steps = arrays["worker/0_0/steps"]
    assert steps[1] == steps[3] != steps[0] == steps[2], steps

    reference = particle_config(tmp_path / "reference", "pes", strategy=strategy)
    reference["estimator"]["stagger"] = "lockstep"
    STRATEGIES["Simple"](**reference["strategy"]).run(MetaTrainer(reference),
                                                      reference["directory"])
    expected = [json.loads(line)["validation_meta_loss"] for line in
                (tmp_path / "reference" / "summary.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(records[-1]["validation_meta_loss"], expected[-1], rtol=0.05)


@pytest.mark.slow
def test_black_box_candidates_score_the_same_on_workers(cluster):
    from l2o.blackbox import ESOptimizer, LocalEvaluator

    def model():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, "tanh"),
                                 keras.layers.Dense(1)])

    def score(model, samples):  # a closure: sent to the workers by value
        inputs, targets = samples
        return -float(np.mean((model(inputs).numpy() - targets) ** 2))

    generator = np.random.default_rng(0)
    samples = (generator.normal(size=(16, 3)).astype("float32"),
               generator.normal(size=(16, 1)).astype("float32"))
    local, remote = model(), model()
    center = [v.numpy() for v in local.trainable_variables]
    offsets = {index: generator.normal(0, 0.1, (6,) + center[index].shape).astype("float32")
               for index in (0, 2)}
    with ESOptimizer(remote, score, n_samples=6, n_workers=2, address=cluster.address,
                     seed=1) as workers:
        scores = workers.evaluator(center, offsets, samples)
        assert len({node for _, _, node in workers.evaluator._workers.where()}) == 2
        expected = LocalEvaluator(local, score)(center, offsets, samples)
        np.testing.assert_allclose(scores, expected, rtol=1e-6)
        assert len(np.unique(expected)) == 6
        # Whole steps too: the same estimates as in one process.
        for _ in range(2):
            workers.step(samples)
    with ESOptimizer(local, score, n_samples=6, seed=1) as one:
        for _ in range(2):
            one.step(samples)
    for got, want in zip(remote.get_weights(), local.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_a_private_ray_listens_on_loopback_only_without_a_dashboard():
    psutil = pytest.importorskip("psutil")
    script = (
        "import json, psutil\n"
        "from l2o import distributed\n"
        "ray, started = distributed.connect(None, 1, 0)\n"
        "processes = [psutil.Process(), *psutil.Process().children(recursive=True)]\n"
        "pids = {p.pid for p in processes}\n"
        "listening = sorted({c.laddr.ip for c in psutil.net_connections('tcp')\n"
        "                    if c.status == 'LISTEN' and c.pid in pids})\n"
        "print(json.dumps([started, ray.nodes()[0]['NodeManagerAddress'], listening,\n"
        "                  [c.laddr.port for c in psutil.net_connections('tcp')\n"
        "                   if c.status == 'LISTEN' and c.laddr.port == 8265]]))\n"
        "ray.shutdown()\n")
    assert psutil
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    started, node, listening, dashboard = json.loads(result.stdout.strip().splitlines()[-1])
    assert started and node == "127.0.0.1" and dashboard == []
    assert listening and set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening


def test_starting_ray_beside_jax_gives_no_fork_warning(monkeypatch):
    """Ray starts its processes with Popen and a preexec_fn, which runs JAX's at-fork hook
    and its "os.fork() ... deadlock" warning; the child only execs Ray's binary, so connect
    silences that warning (and only it)."""
    jax = pytest.importorskip("jax")
    jax.devices()  # the backend starts, and with it JAX's at-fork hook

    def init(**_):  # what Ray's start-up does for each of its processes
        subprocess.Popen([sys.executable, "-c", "pass"], preexec_fn=lambda: None).wait()  # noqa: PLW1509
        warnings.warn("another warning", RuntimeWarning)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        subprocess.Popen([sys.executable, "-c", "pass"], preexec_fn=lambda: None).wait()  # noqa: PLW1509
        assert [str(w.message)[:20] for w in caught] == ["os.fork() was called"]
        del caught[:]
        assert distributed.connect(None, 1, 0) == (ray, True)
    assert [str(w.message) for w in caught] == ["another warning"]


@pytest.mark.slow
def test_an_error_inside_a_worker_is_one_line_naming_the_worker(cluster):
    class Failing:  # local: sent to the worker by value
        def divide(self, numerator):
            return numerator / 0

    workers = distributed.Workers(Failing, 1, cluster.address, 1, 0)
    try:
        with pytest.raises(distributed.WorkerError) as raised:
            workers.call({0: ("divide", (1.0,))})
    finally:
        workers.close()
    assert str(raised.value) == "worker 0, divide: ZeroDivisionError: float division by zero"

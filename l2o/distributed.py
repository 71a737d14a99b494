"""Ray: the one module of l2o that talks to it (connecting, worker actors, lost workers).

Ray is optional (``pip install -e ".[distributed]"``) and imported only when
workers start. ``Workers`` starts N Ray actors; each builds its *target* once
from a picklable ``factory`` (a run's particle estimators, a run's trainer
keeping its share of the TBPTT trajectories, a Keras model and its objective)
and ``Workers.call`` runs methods of the targets in parallel.

A worker whose process dies (kill -9, a lost node) is restarted by Ray, which
builds a fresh target from the factory. Whatever the old target held is gone,
so a call never runs on a target it was not meant for: each target carries an
incarnation id, a call names the one it expects, and a call that fails with
the process, or meets a new incarnation, reports its worker *lost*. The caller
decides what to redo (``call`` returns the lost workers; ``retry=True`` simply
runs their calls again, for stateless targets).

The ``distributed`` config section (defaults in ``l2o.config``):
``workers`` (0: no Ray), ``address`` (null: start a private Ray on this
machine, bound to 127.0.0.1 with the dashboard off; ``auto``: join the cluster
that ``ray start`` began on this machine; ``ray://host:port`` or
``host:port``: join that cluster), ``cpus_per_worker``, ``gpus_per_worker``
(Ray resources each actor reserves; fractions allowed). A process already
connected to Ray (``ray.init`` by its caller) keeps that connection.
"""

import contextlib
import importlib.util
import math
import os
import sys
import time
import uuid

from l2o.registry import ESTIMATORS
from l2o.validation import ConfigError, check_range, first_line

INSTALL = 'pip install -e ".[distributed]" (or pip install "ray[default]")'
# A worker lost this many times in a row while one call is redone is given up on, and
# one that has not come back this many seconds after it was lost.
ATTEMPTS = 3
RESTART_SECONDS = 600


class WorkerError(ConfigError):
    """Workers that cannot start, or keep dying (one line for the user, like a config error)."""


def available():
    return importlib.util.find_spec("ray") is not None


def check_config(config):
    """Raises ConfigError naming the ``distributed/...`` key that cannot work."""
    settings, training = config["distributed"], config["training"]
    workers, address = settings["workers"], settings["address"]
    if workers < 0:
        raise ConfigError(f"distributed/workers: must be at least 0 (0: no workers), got {workers}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ConfigError(f"distributed/address: null (a private Ray on this machine), 'auto' "
                          f"or a cluster's address such as ray://host:10001, got {address!r}")
    check_range("distributed/cpus_per_worker", settings["cpus_per_worker"], 0.0, math.inf)
    if not 0 <= settings["gpus_per_worker"] < math.inf:
        raise ConfigError(f"distributed/gpus_per_worker: must be finite and non-negative, "
                          f"got {settings['gpus_per_worker']}")
    if workers == 0:
        return
    if not available():
        raise ConfigError(f"distributed/workers: {workers} workers need Ray, which is not "
                          f"installed: {INSTALL}")
    pairs = ESTIMATORS[config["estimator_constructor"]](**config["estimator"]).distributed_units()
    if pairs is None:
        _check_tasks(workers, training, len(config["problems"]))
        return
    if workers > pairs:
        raise ConfigError(f"distributed/workers: each worker holds at least one antithetic pair, "
                          f"and estimator/n_particles {config['estimator']['n_particles']} makes "
                          f"{pairs}; use at most {pairs} workers")


def _check_tasks(workers, training, problems):
    """TBPTT puts whole trajectories on workers, which run together only in an averaged
    meta-batch."""
    if training["meta_batch"] != "averaged":
        raise ConfigError("distributed/workers: TBPTT trajectories run on workers together "
                          "only when their meta-gradients are averaged (sequential "
                          "meta-updates wait for each other); set training/meta_batch to "
                          "averaged, or workers to 0")
    tasks = problems * training["epochs"]
    if workers > tasks:
        raise ConfigError(f"distributed/workers: each worker keeps at least one trajectory, and "
                          f"{problems} problems x training/epochs {training['epochs']} make "
                          f"{tasks}; use at most {tasks} workers")


def _ray():
    try:
        import ray
    except ImportError:
        raise WorkerError(f"workers need Ray, which is not installed: {INSTALL}") from None
    return ray


@contextlib.contextmanager
def loopback():
    """Ray processes started inside bind to 127.0.0.1 only.

    Ray binds its servers to the node's address, which on Linux it takes to be
    the machine's outward one; it keeps to the loopback address where it
    assumes a laptop (its Windows/macOS mode), which this switch selects for the
    processes started meanwhile (they inherit the environment).
    """
    ray = _ray()
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    constants = ray._private.ray_constants
    saved = os.environ.get(name), constants.ENABLE_RAY_CLUSTER
    os.environ[name], constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(name)
        else:
            os.environ[name] = saved[0]
        constants.ENABLE_RAY_CLUSTER = saved[1]


@contextlib.contextmanager
def _quiet_fork_warning():
    """Silences JAX's "os.fork() was called ... will likely lead to a deadlock" while Ray starts.

    Ray starts its own processes (the GCS server, the raylet) with ``subprocess.Popen`` and
    a ``preexec_fn``, which makes CPython run the at-fork hooks, JAX's warning among them.
    The forked child only blocks SIGINT and asks to die with its parent (prctl) before it
    execs Ray's binary: it never runs JAX, whose threads it does not have. The workers
    themselves are started by the raylet, not forked from this process. So the warning,
    twice per start, is noise here; elsewhere it is left alone.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        yield


def connect(address, cpus, gpus):
    """Connects this process to Ray; returns ``(ray, started)``, ``started`` if it began
    a private local Ray (``address`` None) with ``cpus`` and ``gpus`` to hand out."""
    ray = _ray()
    if ray.is_initialized():
        return ray, False
    if address is None:
        with loopback(), _quiet_fork_warning():
            ray.init(address="local", num_cpus=math.ceil(cpus), num_gpus=math.ceil(gpus),
                     include_dashboard=False, log_to_driver=False)
        return ray, True
    try:
        import keras

        # Workers of a cluster do not inherit this process's environment: the backend goes along.
        with _quiet_fork_warning():
            ray.init(address=address, log_to_driver=False,
                     runtime_env={"env_vars": {"KERAS_BACKEND": keras.backend.backend()}})
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise WorkerError(f"distributed/address: cannot join the Ray cluster at {address!r}: "
                          f"{str(error).strip().splitlines()[0]}") from None
    return ray, False


class Host:
    """The body of a worker actor: its target, built once, and the incarnation it answers to."""

    def __init__(self, factory):
        self.target = factory()
        self.incarnation = uuid.uuid4().hex

    def call(self, incarnation, method, args):
        if incarnation != self.incarnation:
            return False, self.incarnation  # restarted: the caller's target is gone
        return True, getattr(self.target, method)(*args)

    def where(self):
        """``(incarnation, process id, Ray node id)``."""
        import ray

        return self.incarnation, os.getpid(), ray.get_runtime_context().get_node_id()


class Workers:
    """``workers`` Ray actors, each holding ``factory()``; see the module docstring.

    ``restarts`` counts the workers found lost since the start.
    """

    def __init__(self, factory, workers, address, cpus_per_worker, gpus_per_worker):
        self.ray, self._started = connect(address, workers * cpus_per_worker,
                                          workers * gpus_per_worker)
        actor = self.ray.remote(Host).options(num_cpus=cpus_per_worker,
                                              num_gpus=gpus_per_worker, max_restarts=-1)
        self.actors = [actor.remote(factory) for _ in range(workers)]
        self.count, self.restarts = workers, 0
        try:
            self.incarnations = [where[0] for where in self.where()]
        except self.ray.exceptions.RayActorError as error:
            self.close()
            raise WorkerError(f"a worker failed to start: "
                              f"{str(error).strip().splitlines()[-1]}") from None

    def where(self, indices=None):
        """``(incarnation, process id, node id)`` of each worker (of those ``indices`` lists)."""
        indices = range(self.count) if indices is None else indices
        return self.ray.get([self.actors[index].where.remote() for index in indices])

    def call(self, calls, retry=False, expect=None):
        """Runs ``calls`` ({worker index: (method, args)}) on the workers' targets at once.

        Returns ``(results, lost)``: {index: result} of the calls that ran, and the
        sorted indices of the workers lost on the way. A call expects the
        worker's target of incarnation ``expect[index]`` (default: the latest
        seen), and finds it lost when the worker has been restarted since. With
        ``retry`` the calls of lost workers run again on their fresh targets
        until they finish (``lost`` then lists the workers lost at least once).
        """
        expected = {index: (expect or {}).get(index, self.incarnations[index])
                    for index in calls}
        results, lost, pending = {}, set(), dict(calls)
        for _ in range(ATTEMPTS):
            refs = {index: self.actors[index].call.remote(expected[index], method, args)
                    for index, (method, args) in pending.items()}
            failed = set()
            for index, ref in refs.items():
                try:
                    ran, value = self.ray.get(ref)
                except self.ray.exceptions.RayActorError:
                    ran = False
                except self.ray.exceptions.RayTaskError as error:
                    # The worker lives but its code raised: the run cannot go on, and the
                    # user needs the cause, not Ray's remote traceback.
                    cause = error.cause if error.cause is not None else error
                    raise WorkerError(f"worker {index}, {pending[index][0]}: "
                                      f"{type(cause).__name__}: {first_line(str(cause))}"
                                      ) from None
                if ran:
                    results[index] = value
                else:
                    failed.add(index)
            if failed:
                self._refresh(failed)
            lost |= failed
            if not failed or not retry:
                return results, sorted(lost)
            pending = {index: pending[index] for index in failed}
            expected.update({index: self.incarnations[index] for index in failed})
        raise WorkerError(f"workers {sorted(pending)} were lost {ATTEMPTS} times in a row")

    def notify(self, calls):
        """Sends ``calls`` like ``call`` without waiting for them (or minding lost workers)."""
        for index, (method, args) in calls.items():
            if index < len(self.actors):
                self.actors[index].call.remote(self.incarnations[index], method, args)

    def _refresh(self, indices):
        """Waits until the workers ``indices`` answer again (Ray restarts dead ones, which
        takes as long as building a target) and learns their incarnations, counting each
        new one as a restart."""
        deadline = time.monotonic() + RESTART_SECONDS
        for index in sorted(indices):
            while True:
                try:
                    incarnation = self.where([index])[0][0]
                    break
                except self.ray.exceptions.RayActorError as error:
                    if time.monotonic() > deadline:
                        raise WorkerError(f"Ray worker {index} did not come back within "
                                          f"{RESTART_SECONDS} s: "
                                          f"{str(error).strip().splitlines()[-1]}") from None
                    time.sleep(0.5)
            if incarnation != self.incarnations[index]:
                self.restarts += 1
                print(f"warning: Ray worker {index} was lost and has been restarted",
                      file=sys.stderr)
            self.incarnations[index] = incarnation

    def close(self):
        """Stops the actors (and the private Ray, if this started it)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._started:
            self.ray.shutdown()

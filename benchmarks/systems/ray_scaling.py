"""Ray workers against one process: PES particles/s, black-box ES candidates/s, and when
workers pay.

    python -m benchmarks.systems.ray_scaling [--rounds 5] [--quick]

1. PES on configs/pes_schedule_mnist.yaml as shipped (ScheduledSGD on the MNIST MLP
   784-20-10, batch 128, 16 particles, breakstep, K = 20): the single-process vectorised
   path (every particle in one vectorised call) against the same population sharded on 1
   and 2 Ray workers (each runs its share in one vectorised call; the learner sums the
   shares). Particles/s = particles / seconds per truncation.
2. Black-box ES on cart-pole (examples/es_cartpole.py's objective; 20 candidates x 5
   episodes of an untrained 4-8-1 policy): every candidate in one batched rollout in this
   process, one at a time in this process, and one at a time on 1 and 2 Ray workers.
3. A model of communication per truncation against compute for each config in configs/
   (printed with its assumptions): bytes each worker receives (meta-weights, seeds or
   requests) and returns (its share of the gradient, or each trajectory's meta-gradient, and
   losses), and up to how many workers the compute of a truncation outweighs moving them.

The routes of a part are timed round by round, interleaved (one truncation or ES step of
each in turn, after one untimed call that traces and starts everything), and medians are
reported. All of them share one private Ray on this machine (127.0.0.1, no dashboard); its
workers compete for this machine's cores with the learner and with whatever else runs.
``--quick`` shrinks everything (4 particles, K = 5, 4 candidates, 2 rounds) to check that
the script runs.
"""

import argparse
import contextlib
import importlib
import math
import os
import textwrap
import time

import keras
import numpy as np

from benchmarks.common import CONFIGS, ROOT, config_path, median_times
from l2o import blackbox, distributed, problems
from l2o.config import load_file, resolve
from l2o.registry import OPTIMIZERS
from l2o.trainer import MetaTrainer

PES_CONFIG = config_path("pes_schedule_mnist.yaml")
WORKER_COUNTS = (1, 2)
# The assumed cluster network: 1 Gbit/s and a 0.5 ms round trip between learner and worker.
BANDWIDTH, LATENCY = 125e6, 0.5e-3
# Bytes of a call's own framing besides its arrays (Ray task, pickled tuple); a request for a
# TBPTT task carries its truncation's numpy Generator (~0.5 kB pickled).
CALL_BYTES, REQUEST_BYTES = 200, 500


def pes_route(overrides, workers):
    """``(run(round), trainer)``: one PES truncation of the config's population, its particles
    on ``workers`` Ray workers (0: this process)."""
    config = resolve(load_file(PES_CONFIG), overrides + [f"distributed/workers={workers}"])
    trainer = MetaTrainer(config)
    estimator = trainer.estimators[0]
    population = estimator.init_worker_state(0)
    theta = estimator.truncations.flatten(trainer.meta_weights())
    length = config["strategy"]["unroll_distribution"]

    def run(round_):
        gradient, _ = population.estimate(theta, np.random.default_rng(round_), length)
        assert np.all(np.isfinite(gradient))

    return run, trainer


def pes_part(overrides, rounds):
    config = resolve(load_file(PES_CONFIG), overrides)
    particles, length = config["estimator"]["n_particles"], config["strategy"]["unroll_distribution"]
    routes, trainers = {}, []
    try:
        for workers in (0, *WORKER_COUNTS):
            routes[workers], trainer = pes_route(overrides, workers)
            trainers.append(trainer)
        medians = median_times(routes, rounds)
        # An empty call to one worker (it forgets a population it never had): Ray's round trip.
        round_trip = median_times({"empty": lambda _: trainers[1].remote.call(
            {0: ("forget", ((), -1))})}, 4 * rounds)["empty"]
    finally:
        for trainer in trainers:
            trainer.close()
    single = medians[0]
    print(f"PES, {' '.join([os.path.relpath(PES_CONFIG, ROOT), *overrides])}: {particles} "
          f"particles, K = {length}; median of {rounds} truncations\n")
    print("| route | s per truncation | particles / s | particle-steps / s | vs one process |")
    print("| --- | --- | --- | --- | --- |")
    for workers, median in medians.items():
        name = "one process, vectorised" if workers == 0 else f"{workers} Ray worker" + \
            ("s" if workers > 1 else "")
        print(f"| {name} | {median:.3f} | {particles / median:.1f} | "
              f"{particles * length / median:.0f} | {single / median:.2f}x |")
    print(f"\nAn empty call to one Ray worker here: {round_trip * 1e3:.2f} ms (median of "
          f"{4 * rounds})")
    return {"particle_step": single / (particles * length), "round_trip": round_trip,
            "config": config}


# ------------------------------------------------------------------ 2. black-box ES candidates/s

def load_cartpole():
    """examples/es_cartpole.py as a module, sent to Ray workers by value (they need not be
    able to import the repository's examples package)."""
    module = importlib.import_module("examples.es_cartpole")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(module)
    return module


def es_part(candidates, episodes, max_steps, rounds):
    cartpole = load_cartpole()
    keras.utils.set_random_seed(0)
    policy = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                               keras.layers.Dense(1)])
    center = [np.asarray(v.numpy()) for v in policy.trainable_variables]
    generator = np.random.default_rng(0)
    offsets = {index: 0.1 * generator.standard_normal((candidates,) + value.shape)
               .astype(np.float32) for index, value in enumerate(center)}
    samples = [cartpole.initial_states(np.random.default_rng(seed), episodes)
               for seed in range(rounds + 1)]
    evaluators = {
        "one process, one batched rollout": blackbox.VectorizedEvaluator(
            cartpole.BatchedReward(policy, max_steps), candidates),
        "one process, one at a time": blackbox.LocalEvaluator(policy,
                                                              cartpole.Reward(max_steps)),
        **{f"{workers} Ray worker{'s' if workers > 1 else ''}": blackbox.WorkerEvaluator(
            policy, cartpole.Reward(max_steps), workers) for workers in WORKER_COUNTS}}
    lengths = []

    def route(evaluator):
        def run(round_):
            values = evaluator(center, offsets, samples[round_])
            lengths.append(float(np.mean(values)))
        return run

    try:
        medians = median_times({name: route(e) for name, e in evaluators.items()}, rounds)
    finally:
        for evaluator in evaluators.values():
            evaluator.close()
    one_at_a_time = medians["one process, one at a time"]
    print(f"\nBlack-box ES on cart-pole: {candidates} candidates x {episodes} episodes (at most "
          f"{max_steps} steps; the untrained policy's last {episodes} x {candidates} episodes "
          f"lasted {np.mean(lengths[-len(evaluators):]):.1f} steps on average); median of "
          f"{rounds} ES steps\n")
    print("| route | s per ES step | candidates / s | vs one at a time in process |")
    print("| --- | --- | --- | --- |")
    for name, median in medians.items():
        print(f"| {name} | {median:.3f} | {candidates / median:.1f} | "
              f"{one_at_a_time / median:.2f}x |")


# ------------------------------------------------------------------ 3. the model

def truncation_length(config):
    """K: a fixed unroll, the mean of a geometric one, or a curriculum's first stage."""
    strategy = config["strategy"]
    if "schedule" in strategy and isinstance(strategy["schedule"], dict):
        return int(strategy["schedule"]["base"])
    value = strategy.get("unroll_distribution")
    return int(value) if isinstance(value, int) else round(1 / value)


def member_sizes(problem):
    """(parameters, examples per step) of each task of ``problem``."""
    sizes = []
    for member in problem.members():
        parameters = sum(np.size(p) for p in member.init(0))
        batch = member.batches(0, 0, 1)
        shape = np.shape(batch[0]) if len(batch) else ()
        sizes.append((parameters, shape[1] if len(shape) > 1 else 1))
    return sizes


def step_flops(sizes, meta_weights, estimator):
    """Flops of one inner step, a crude count: the inner gradient 6 b n (dense layers; conv
    layers reuse weights, which this undercounts) and the learned optimiser applied once per
    parameter, 2 D; times 3 for TBPTT's backward pass through the unroll."""
    flops = np.mean([n * (6 * b + 2 * meta_weights) for n, b in sizes])
    return flops * (3 if estimator == "tbptt" else 1)


def config_model(path, seconds_per_flop, round_trip):
    config = resolve(load_file(path))
    training, name = config["training"], os.path.relpath(path, ROOT)
    built = [problems.build(spec, f"problems/{index}")
             for index, spec in enumerate(config["problems"])]
    meta = OPTIMIZERS[config["constructor"]].initial_meta_weights(config, built)
    dimension = sum(np.size(value) for value in meta.values())
    estimator, length = config["estimator_constructor"], truncation_length(config)
    if config["constructor"] == "PIO":
        return f"| {name} | PIO | {dimension} | - | - | - | - | not modelled: its estimator " \
               f"samples an SDE, not an unroll |"
    sizes = [size for problem in built for size in member_sizes(problem)]
    unit = seconds_per_flop * step_flops(sizes, dimension, estimator)
    if estimator == "tbptt":
        units, kinds = len(built) * training["epochs"], ("trajectory", "trajectories")
        cap = units
    else:
        units, kinds = config["estimator"]["n_particles"], ("particle", "particles")
        cap = units // 2

    def traffic(share):
        """Bytes (in, out) of a worker that holds ``share`` units."""
        if estimator == "tbptt":  # meta-weights and requests in; a gradient per trajectory out
            return (4 * dimension + CALL_BYTES + share * REQUEST_BYTES,
                    share * (4 * dimension + CALL_BYTES))
        return 4 * dimension + CALL_BYTES, 8 * dimension + 4 * share + CALL_BYTES

    def compute_bound(workers):
        share = math.ceil(units / workers)
        communication = LATENCY + round_trip + workers * sum(traffic(share)) / BANDWIDTH
        return share * length * unit >= communication

    most = max((workers for workers in range(1, cap + 1) if compute_bound(workers)), default=0)
    needed = math.ceil((LATENCY + round_trip + sum(traffic(1)) / BANDWIDTH) / (length * unit))
    received, sent = traffic(math.ceil(units / cap))
    return (f"| {name} | {estimator} | {dimension} | {units} {kinds[units > 1]} | {length} | "
            f"{received / 1e3:.1f} / {sent / 1e3:.1f} kB | {1e3 * length * unit:.2f} ms | "
            f"{most or 'none'} of {cap} | {needed} |")


def model_part(measured):
    particle_step, round_trip = measured["particle_step"], measured["round_trip"]
    config = measured["config"]
    built = [problems.build(spec, f"problems/{index}")
             for index, spec in enumerate(config["problems"])]
    dimension = sum(np.size(value) for value in OPTIMIZERS[config["constructor"]]
                    .initial_meta_weights(config, built).values())
    calibration = step_flops([size for problem in built for size in member_sizes(problem)],
                             dimension, config["estimator_constructor"])
    seconds_per_flop = particle_step / calibration
    print("\n" + textwrap.fill(
        f"Communication against compute per truncation (a model). A worker receives 4 D bytes "
        f"(the meta-weights, float32) and returns, for ES/PES, its share of the estimate (8 D, "
        f"float64) and 4 bytes per particle of losses; for TBPTT (training/meta_batch "
        f"averaged) it receives its trajectories' requests (~{REQUEST_BYTES} B each) too and "
        f"returns one float32 meta-gradient (4 D) per trajectory; ~{CALL_BYTES} B of framing "
        f"each way. The learner's link carries every worker's bytes, so a truncation's "
        f"communication with N workers is {LATENCY * 1e3:.1f} ms (assumed round trip) + the "
        f"measured Ray round trip here ({round_trip * 1e3:.2f} ms, the empty call above) + N x "
        f"bytes per worker / "
        f"{BANDWIDTH * 8 / 1e9:.0f} Gbit/s (assumed). Compute per worker is its share of "
        f"particles (or trajectories) x K x the time of one unit-step, scaled from the "
        f"measured PES particle-step ({particle_step * 1e6:.1f} us for "
        f"{calibration / 1e6:.1f} Mflop) by a crude flop count: n (6 b + 2 D) per step (n "
        f"inner parameters, b examples per step, D meta-weights applied once per parameter), "
        f"x 3 for TBPTT's backward pass; conv layers are undercounted, and with them their "
        f"compute. A config stays compute-bound while compute >= communication; the cap is "
        f"n_particles / 2 workers (an antithetic pair each) or the trajectories of a "
        f"meta-batch (problems x training/epochs). The last column is the fewest units "
        f"(particles or trajectories) a worker needs per truncation for its compute to "
        f"outweigh one round trip.", 96) + "\n")
    print("| config | estimator | D | units | K | per worker in / out (at the cap) | "
          "compute per unit-truncation | compute-bound up to (workers) | units per worker "
          "needed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in sorted(os.listdir(CONFIGS)):
        if name.endswith(".yaml"):
            print(config_model(os.path.join(CONFIGS, name), seconds_per_flop, round_trip))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per part")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script")
    args = parser.parse_args()
    overrides, candidates, episodes, max_steps = [], 20, 5, 500
    if args.quick:
        args.rounds, candidates, episodes, max_steps = 2, 4, 2, 20
        overrides = ["estimator/n_particles=4", "strategy/unroll_distribution=5"]
    started = time.perf_counter()
    print(f"This machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the "
          f"start (shared: ratios are of one run, and noisy)\n")
    # One private Ray for every route: a worker of each count at once, plus room to spare.
    ray, _ = distributed.connect(None, 1 + sum(WORKER_COUNTS), 0)
    with contextlib.ExitStack() as stack:
        stack.callback(ray.shutdown)
        measured = pes_part(overrides, args.rounds)
        es_part(candidates, episodes, max_steps, args.rounds)
    model_part(measured)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()

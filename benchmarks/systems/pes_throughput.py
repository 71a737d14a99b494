"""PES throughput: particles per second as the population grows (does vectorisation pay?).

    python -m benchmarks.systems.pes_throughput [--particles 8 64 512] [--truncations 5]

On the reference PES config (configs/pes_schedule_mnist.yaml: ScheduledSGD on the MNIST
MLP 784-20-10, batch 128, truncations of K = 20 steps), with lockstep particles so that
they share one copy of each batch, this times PES truncations (all particles in one
vectorised call, after one untimed call that traces it) and reports the median seconds
per truncation, particles per second and milliseconds per particle-truncation. All sizes
are measured in one process, interleaved round by round.
"""

import argparse
import time

import numpy as np

from benchmarks import common
from l2o.config import load_file, resolve
from l2o.trainer import MetaTrainer

CONFIG = common.config_path("pes_schedule_mnist.yaml")


def population(particles):
    """``run(seed)``: one PES truncation of ``particles`` particles; and K."""
    config = resolve(load_file(CONFIG), [f"estimator/n_particles={particles}",
                                         "estimator/stagger=lockstep", "estimator/horizon=null"])
    trainer = MetaTrainer(config)
    truncations = trainer.estimators[0].truncations
    estimator = trainer.estimators[0].init_worker_state(0)
    theta = truncations.flatten(trainer.meta_weights())
    length = config["strategy"]["unroll_distribution"]

    def run(seed):
        gradient, _ = estimator.estimate(theta, np.random.default_rng(seed), length)
        assert np.all(np.isfinite(gradient))

    return run, length


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--truncations", type=int, default=5)
    args = parser.parse_args()
    runs = {}
    for particles in args.particles:
        runs[particles], length = population(particles)
        runs[particles](0)  # trace
    seconds = {particles: [] for particles in runs}
    for round_ in range(args.truncations):
        for particles, run in runs.items():
            started = time.perf_counter()
            run(round_ + 1)
            seconds[particles].append(time.perf_counter() - started)
    print(f"PES truncations of K = {length} inner steps, median of {args.truncations}\n")
    print("| particles N | s per truncation | particles / s | particle-steps / s | "
          "ms per particle-truncation |")
    print("| --- | --- | --- | --- | --- |")
    for particles, times in seconds.items():
        median = float(np.median(times))
        print(f"| {particles} | {median:.3f} | {particles / median:.1f} | "
              f"{particles * length / median:.0f} | {1000 * median / particles:.2f} |")


if __name__ == "__main__":
    main()

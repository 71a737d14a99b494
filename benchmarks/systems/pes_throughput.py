"""PES and truncated ES throughput: particles per second as the population grows.

    python -m benchmarks.systems.pes_throughput [--particles 8 64 512] [--truncations 5]
        [--estimators pes es]

On the reference PES config (configs/pes_schedule_mnist.yaml: ScheduledSGD on the MNIST
MLP 784-20-10, batch 128, truncations of K = 20 steps), with lockstep particles so that
they share one copy of each batch, this times PES truncations (all particles in one
vectorised call, after one untimed call that traces it) and reports the median seconds
per truncation, particles per second and milliseconds per particle-truncation; with
``--estimators pes es`` also truncated ES at the same particles and steps (which unrolls
one more copy, the unperturbed one that carries the shared state), and ES's time per
truncation against PES's. All sizes are measured in one process, interleaved round by
round.
"""

import argparse
import time

import numpy as np

from benchmarks import common
from l2o.config import load_file, resolve
from l2o.trainer import MetaTrainer

CONFIG = common.config_path("pes_schedule_mnist.yaml")


def population(particles, estimator="pes"):
    """``run(seed)``: one truncation of ``particles`` particles of ``estimator``; and K."""
    config = resolve(load_file(CONFIG), [f"estimator_constructor={estimator}",
                                         f"estimator/n_particles={particles}",
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
    parser.add_argument("--estimators", nargs="+", default=["pes"], choices=["pes", "es"])
    args = parser.parse_args()
    runs = {}
    for estimator in args.estimators:
        for particles in args.particles:
            runs[estimator, particles], length = population(particles, estimator)
            runs[estimator, particles](0)  # trace
    seconds = {key: [] for key in runs}
    for round_ in range(args.truncations):
        for key, run in runs.items():
            started = time.perf_counter()
            run(round_ + 1)
            seconds[key].append(time.perf_counter() - started)
    medians = {key: float(np.median(times)) for key, times in seconds.items()}
    print(f"Truncations of K = {length} inner steps, median of {args.truncations}\n")
    print("| estimator | particles N | s per truncation | / PES | particles / s | "
          "particle-steps / s | ms per particle-truncation |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (estimator, particles), median in medians.items():
        pes = medians.get(("pes", particles))
        print(f"| {estimator} | {particles} | {median:.3f} | "
              f"{f'{median / pes:.2f}' if pes else ''} | {particles / median:.1f} | "
              f"{particles * length / median:.0f} | {1000 * median / particles:.2f} |")


if __name__ == "__main__":
    main()

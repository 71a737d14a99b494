"""PES particle-steps per second of a learned-optimiser recipe, on each of its tasks.

    L2O_DATA=../shared/data python -m benchmarks.systems.pes_task_rates [--truncations 20]
        [--config mlp_pes_digits.yaml]

Each task of the recipe's ``problems`` runs ``--truncations`` PES truncations of the recipe's
unroll length from one fresh trajectory (one untimed truncation first, which traces); the rate is
particles x steps over the wall time. What a step costs in ``model.fit``:
``benchmarks/systems/step_cost.py``.
"""

import argparse
import time

from benchmarks.common import config_path
from l2o.config import load_file, resolve
from l2o.streams import Stream, rng
from l2o.trainer import MetaTrainer


def pes_rates(truncations, recipe):
    config = resolve(load_file(config_path(recipe)))
    trainer = MetaTrainer(config)
    length = config["strategy"]["unroll_distribution"]
    particles = config["estimator"]["n_particles"]
    rates = {}
    for spec, estimator in zip(config["problems"], trainer.estimators):
        worker = estimator.init_worker_state(0)
        estimator.compute_gradient_estimate(worker, rng(Stream.TRUNCATION, 0), length)  # traces
        started = time.perf_counter()
        for index in range(truncations):
            estimator.compute_gradient_estimate(worker, rng(Stream.TRUNCATION, 1, index), length)
        rates[f"{spec['target']} {spec['kwargs']}"] = (
            truncations * length * particles / (time.perf_counter() - started))
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truncations", type=int, default=20)
    parser.add_argument("--config", default="mlp_pes_digits.yaml", help="a shipped recipe")
    args = parser.parse_args()
    print(f"PES particle-steps/s, configs/{args.config}, {args.truncations} truncations per "
          f"task\n")
    print("| task | particle-steps / s |\n| --- | --- |")
    for task, rate in pes_rates(args.truncations, args.config).items():
        print(f"| {task} | {rate:.0f} |")


if __name__ == "__main__":
    main()

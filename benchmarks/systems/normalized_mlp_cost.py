"""Per-step cost of the NormalizedMLP optimiser: model.fit against Adam, and PES throughput.

    L2O_DATA=../shared/data python -m benchmarks.systems.normalized_mlp_cost [--fit-steps 300]
        [--truncations 20]

(a) ``model.fit`` milliseconds per step of ``NormalizedMLPOptimizer`` and Adam on MNIST
MLPs (the reference 784-20-10 sigmoid and 784-128-128-10 ReLU), batch 128, measured in
interleaved rounds in one process (the median of three); (b) PES particle-steps per second
of the shipped recipe (``configs/mlp_pes_digits.yaml``) on each of its tasks.
"""

import argparse
import time

import keras
import numpy as np

from benchmarks.common import config_path
from l2o.config import load_file, resolve
from l2o.optimizers import NormalizedMLPOptimizer
from l2o.problems import MLPClassifier
from l2o.streams import Stream, rng
from l2o.trainer import MetaTrainer

MODELS = {"784-20-10 sigmoid": {"layers": [20], "activation": "sigmoid"},
          "784-128-128-10 relu": {"layers": [128, 128], "activation": "relu"}}


def fit_runner(problem, make_optimizer, steps):
    images, labels = problem.batches(0, 0, steps)
    images, labels = images.reshape((-1,) + problem.input_shape), labels.reshape(-1)
    model = problem.build_model(problem.init(0))
    model.compile(optimizer=make_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=problem.batch_size, epochs=1, verbose=0)  # traces

    def run():
        started = time.perf_counter()
        model.fit(images, labels, batch_size=problem.batch_size, epochs=1, verbose=0)
        return 1000 * (time.perf_counter() - started) / steps

    return run


def pes_rates(truncations):
    config = resolve(load_file(config_path("mlp_pes_digits.yaml")))
    trainer = MetaTrainer(config)
    length = config["strategy"]["unroll_distribution"]
    particles = config["training"]["n_particles"]
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
    parser.add_argument("--fit-steps", type=int, default=300)
    parser.add_argument("--truncations", type=int, default=20)
    args = parser.parse_args()
    print(f"(a) model.fit, batch 128, median of 3 interleaved rounds of {args.fit_steps} steps\n")
    print("| model | Adam ms/step | NormalizedMLP ms/step | ratio |\n| --- | --- | --- | --- |")
    for name, settings in MODELS.items():
        problem = MLPClassifier(dataset="mnist", batch_size=128, **settings)
        runners = {"adam": fit_runner(problem, lambda: keras.optimizers.Adam(1e-3),
                                      args.fit_steps),
                   "mlp": fit_runner(problem, NormalizedMLPOptimizer, args.fit_steps)}
        times = {key: np.median([run() for _ in range(3)]) for key, run in runners.items()}
        print(f"| {name} | {times['adam']:.2f} | {times['mlp']:.2f} | "
              f"{times['mlp'] / times['adam']:.2f} |")
    print(f"\n(b) PES particle-steps/s, configs/mlp_pes_digits.yaml, {args.truncations} "
          f"truncations per task\n")
    print("| task | particle-steps / s |\n| --- | --- |")
    for task, rate in pes_rates(args.truncations).items():
        print(f"| {task} | {rate:.0f} |")


if __name__ == "__main__":
    main()

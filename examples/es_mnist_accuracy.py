"""Train an MLP on MNIST by maximising its accuracy directly, with evolution strategies.

Accuracy has no useful gradient (it is piecewise constant in the weights), so backprop
cannot optimise it; ES only needs its values. Every step scores all n perturbed copies of
the network on one training minibatch in a single vectorised forward pass.

    python -m examples.es_mnist_accuracy                 # MNIST from $L2O_DATA/mnist
    python -m examples.es_mnist_accuracy --quick         # tiny run on scikit-learn digits
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from l2o import blackbox
from l2o.problems import datasets


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist",
                        help="a data set as l2o names it: mnist ($L2O_DATA/mnist, the default), "
                             "an MNIST-format IDX folder, or digits")
    parser.add_argument("--hidden", type=int, default=32, help="hidden ReLU units")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--n-samples", type=int, default=100, help="candidates per step")
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--learning-rate", type=float, default=0.02, help="Adam's")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="training images each candidate is scored on per step")
    parser.add_argument("--strategy", default="all", choices=blackbox.STRATEGIES)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.8,
                        help="report when validation accuracy first reaches this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds on digits (for the smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.hidden, args.iterations, args.learning_rate = "digits", 16, 150, 0.05
        args.n_samples, args.batch_size, args.eval_every = 40, 256, 50
    return args


def accuracy(logits, labels):
    return ops.mean(ops.cast(ops.argmax(logits, axis=-1) == labels, "float32"), axis=-1)


def main():
    args = parse_args()
    data = datasets.load(args.dataset)
    x_train = data["x_train"].reshape(len(data["x_train"]), -1)
    x_val = data["x_val"].reshape(len(data["x_val"]), -1)
    y_train, y_val = data["y_train"], data["y_val"]
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([keras.Input((x_train.shape[1],)),
                              keras.layers.Dense(args.hidden, activation="relu"),
                              keras.layers.Dense(data["classes"])])

    @blackbox.vectorized
    def batch_accuracy(stacked_weights, batch):
        images, labels = batch
        return accuracy(blackbox.batched_forward(model, stacked_weights, images), labels)

    batch_generator = np.random.default_rng(args.seed + 1)

    def training_batch(_iteration):
        rows = batch_generator.choice(len(y_train), args.batch_size, replace=False)
        return x_train[rows], y_train[rows]

    def validation_accuracy():
        return float(accuracy(model(x_val), y_val))

    optimizer = blackbox.ESOptimizer(
        model, batch_accuracy, keras.optimizers.Adam(args.learning_rate), sigma=args.sigma,
        n_samples=args.n_samples, strategy=args.strategy, seed=args.seed)
    print(f"data: {args.dataset} ({len(y_train)} training / {len(y_val)} validation images); "
          f"model {x_train.shape[1]}-{args.hidden}-{data['classes']} "
          f"({model.count_params()} weights)")
    print("ES:", {k: v for k, v in optimizer.get_config().items() if k != "base_optimizer"},
          f"Adam lr {args.learning_rate}, batch {args.batch_size}")
    print(f"initial validation accuracy {validation_accuracy():.4f}")

    start, reached = time.perf_counter(), None

    def evaluate(stats):
        nonlocal reached
        if stats["iteration"] % args.eval_every and stats["iteration"] != args.iterations:
            return False
        stats["val_acc"] = validation_accuracy()
        if reached is None and stats["val_acc"] >= args.target:
            reached = (stats["iteration"], time.perf_counter() - start)
        print(f"iteration {stats['iteration']:5d}  batch accuracy (mean of candidates) "
              f"{stats['objective_mean'][0]:.4f}  validation accuracy {stats['val_acc']:.4f}  "
              f"{time.perf_counter() - start:7.1f} s", flush=True)
        return False

    optimizer.train(args.iterations, samples=training_batch, callback=evaluate,
                    progress=False)
    elapsed = time.perf_counter() - start
    print(f"final validation accuracy {validation_accuracy():.4f} after {optimizer.iterations} "
          f"iterations x {args.n_samples} candidates, {elapsed:.1f} s")
    if reached is None:
        print(f"validation accuracy never reached {args.target}")
    else:
        print(f"validation accuracy first reached {args.target} at iteration {reached[0]} "
              f"({reached[1]:.1f} s)")


if __name__ == "__main__":
    main()

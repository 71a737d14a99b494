"""Online meta-gradient learning of SGD's learning rate, checked against a grid search.

    python -m examples.online_metagradient [--steps 5000] [--quick]

The problem is tracking a drifting linear regression (the setting of Sutton's
IDBD, 1992): at step t a batch of B = 10 inputs x ~ N(0, I_20) is labelled
y = w*_t . x + noise (standard deviation 1) while the true weights drift,
w*_t = w*_{t-1} + 0.03 N(0, I). A linear model trained by SGD on the loss
(1/2) mean (w . x - y)^2 tracks w*: too small a learning rate lags behind the
drift, too large a one amplifies the noise, so the best constant rate is
inside the range and the grid search below finds it.

The online meta-learner (``l2o.differentiable.OnlineMetaLearner``) keeps one
model running. Each meta-step takes K inner SGD steps (K = ``--lookahead``)
with learning rate exp(eta), scores the new weights on the next batch (which is
also the next step's training batch), and moves eta by Adam on the gradient of
that loss with respect to eta, through the K steps. It runs twice, from a rate
far below and one far above the grid's best. The grid search runs SGD with
every constant rate on the same streams (all rates at once: the learning rate
is a tensor, one per row of a batch of models). Both score a rate by the
online loss, each batch's loss before the model trains on it, averaged over
the second half of the run.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from l2o import backend, differentiable

DIMENSION, BATCH, NOISE, DRIFT = 20, 10, 1.0, 0.03


def stream(seed, steps):
    """``steps`` batches ``(x [steps, B, d], y [steps, B])`` of the drifting regression."""
    generator = np.random.default_rng(seed)
    true_weights = generator.normal(size=DIMENSION) + np.cumsum(
        DRIFT * generator.normal(size=(steps, DIMENSION)), axis=0)
    x = generator.normal(size=(steps, BATCH, DIMENSION))
    y = np.einsum("tbd,td->tb", x, true_weights) + NOISE * generator.normal(size=(steps, BATCH))
    return x.astype(np.float32), y.astype(np.float32)


def half_squared_error(params, batch):
    """(1/2) mean squared error; weights [..., d] give one loss per leading index."""
    x, y = batch
    predictions = ops.einsum("bd,...d->...b", x, params[0])
    return 0.5 * ops.mean(ops.square(predictions - y), axis=-1)


def second_half_mean(losses):
    """Mean over the second half of the leading (step) axis."""
    return np.mean(losses[len(losses) // 2:], axis=0)


def grid_search(learning_rates, seeds, steps):
    """Online loss over the second half, [seed, rate], for every constant rate."""
    optimizer = differentiable.sgd(learning_rate=ops.convert_to_tensor(learning_rates[:, None]))

    def train_step(weights, batch):
        losses = half_squared_error(weights, batch)
        weights, _, _ = differentiable.inner_loop(
            lambda params, batch: ops.sum(half_squared_error(params, batch)), weights,
            optimizer, [batch])
        return weights, losses

    train_step = backend.compile_fn(train_step)
    scores = []
    for seed in seeds:
        x, y = stream(seed, steps)
        weights = [np.zeros((len(learning_rates), DIMENSION), np.float32)]
        losses = []
        for t in range(steps):
            weights, step_losses = train_step(weights, (x[t], y[t]))
            losses.append(ops.convert_to_numpy(step_losses))
        scores.append(second_half_mean(np.array(losses)))
    return np.array(scores)


def meta_learn(initial_rate, seed, steps, lookahead, meta_lr):
    """Returns the learning rate after every meta-step and the online loss of every step."""
    log_rate = keras.Variable(np.log(initial_rate), dtype="float32", name="log_learning_rate")
    learner = differentiable.OnlineMetaLearner(
        half_squared_error, [np.zeros(DIMENSION, np.float32)],
        differentiable.sgd(learning_rate=lambda: ops.exp(log_rate)),
        keras.optimizers.Adam(meta_lr), [log_rate])
    x, y = stream(seed, steps + 1)
    rates, losses = [initial_rate], []
    for t in range(0, steps - lookahead + 1, lookahead):
        _, inner_losses = learner.step([(x[k], y[k]) for k in range(t, t + lookahead)],
                                       (x[t + lookahead], y[t + lookahead]))
        losses.extend(ops.convert_to_numpy(inner_losses))
        rates.append(float(np.exp(ops.convert_to_numpy(log_rate))))
    return np.array(rates), np.array(losses)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="inner SGD steps per run")
    parser.add_argument("--lookahead", type=int, default=1,
                        help="K: inner steps differentiated through per meta-step")
    parser.add_argument("--meta-lr", type=float, default=0.01, help="Adam's rate on log lr")
    parser.add_argument("--starts", type=float, nargs="+", default=[0.001, 0.5],
                        help="initial learning rates of the meta-learner")
    parser.add_argument("--grid-points", type=int, default=25,
                        help="log-spaced learning rates from 1e-3 to 0.5")
    parser.add_argument("--grid-seeds", type=int, default=3,
                        help="streams per grid rate (seeds 0, 1, ...); the meta-learner uses 0")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 400 steps, 7 grid rates, 1 seed")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.grid_points, args.grid_seeds = 400, 7, 1
    for name in ("steps", "lookahead", "grid_points", "grid_seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.steps < 2 * args.lookahead:
        parser.error("--steps must be at least twice --lookahead")
    if not all(0 < rate for rate in args.starts):
        parser.error("--starts must be positive")

    grid = np.geomspace(1e-3, 0.5, args.grid_points).astype(np.float32)
    scores = grid_search(grid, range(args.grid_seeds), args.steps)
    mean_scores = scores.mean(axis=0)
    best, best_seed0 = int(np.argmin(mean_scores)), int(np.argmin(scores[0]))
    print(f"grid search: online loss over steps {args.steps // 2}-{args.steps} per constant "
          f"learning rate: mean over seeds 0..{args.grid_seeds - 1}, and seed 0 alone")
    for index, rate in enumerate(grid):
        marks = "".join(mark for mark, chosen in (("   <- best (mean)", index == best),
                                                  ("   <- best (seed 0)", index == best_seed0))
                        if chosen)
        print(f"  lr {rate:.4g}: {mean_scores[index]:.4f}  seed 0: {scores[0, index]:.4f}{marks}")

    runs = {}
    checkpoints = sorted({0, *(args.steps * k // 10 for k in range(1, 11))})
    for start in args.starts:
        rates, losses = meta_learn(start, 0, args.steps, args.lookahead, args.meta_lr)
        runs[start] = rates
        trajectory = ", ".join(f"{step}: {rates[step // args.lookahead]:.4g}"
                               for step in checkpoints if step // args.lookahead < len(rates))
        last_fifth = rates[len(rates) * 4 // 5:]
        print(f"\nmeta-learner from lr {start:g} (lookahead {args.lookahead}, "
              f"meta Adam {args.meta_lr:g}), lr after step: {trajectory}")
        print(f"  geometric mean lr over the last 20% of meta-steps: "
              f"{np.exp(np.mean(np.log(last_fifth))):.4g}  (grid best {grid[best]:.4g})")
        print(f"  its online loss over the second half (seed 0): "
              f"{second_half_mean(losses):.4f}  (grid best on seed 0: "
              f"{scores[0, best_seed0]:.4f} at lr {grid[best_seed0]:.4g})")
    return {"best_learning_rate": float(grid[best]), "learning_rates": runs}


if __name__ == "__main__":
    main()

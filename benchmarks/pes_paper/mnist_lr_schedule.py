"""MNIST learning-rate schedule (Vicol et al., ICML 2021): truncated ES vs PES on a grid.

    python -m benchmarks.pes_paper.mnist_lr_schedule            # about 15 minutes on one CPU core
                                                                # (T = 1000, N = 32, 400 iterations)
    python -m benchmarks.pes_paper.mnist_lr_schedule --quick    # seconds

An MLP on MNIST (``configs/pes_schedule_paper.yaml``: ScheduledSGD, heavy-ball momentum
0.9) trains for T steps with the inverse-time-decay schedule

    lr_t = lr0 / (1 + t / T)^p,    theta = (log lr0, log p)

(decay_steps = T, as the paper's 5000 = T, so that the schedule has the paper's shape
over the horizon). As in the paper, theta holds the logarithms of both hyperparameters
(``network/learn_log_power``), and every particle is one row of the vectorised truncation
of ``l2o.estimators.particles.ParticleTruncations``.
Two meta-objectives, plain sums over the T steps (``training/meta_objective``):

    train_sum_loss   F(theta) = sum_t loss(w_{t-1}, b_t)          (minimised)
    val_sum_acc      F(theta) = -sum_t accuracy(w_t, v_t)          (accuracy maximised)

From the paper's start lr0 = 0.003, p = 30, truncated ES and PES (``l2o.estimators.es``;
N particles, sigma 0.1, truncations of K = 10 and 100 steps of inner runs that restart
every T steps) each take ``--iterations`` outer Adam (1e-2) steps on their estimate of
dF/dtheta. A G x G grid of F over log10 lr0 x log10 p, every point one particle of one
batched unroll over the same T steps and batches as the final evaluation, is drawn as two
heat maps (benchmarks/figures/pes_schedule.png) under the eight trajectories; the table
gives each run's final hyperparameters and F at them over the full horizon T.

Short truncations bias truncated ES: each K-step window sees only the near-term effect
of lr_t, which favours a small, fast-decaying rate; PES accumulates its perturbations
over the whole horizon and is unbiased for dF/dtheta (of the Gaussian-smoothed F).
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np
from keras import ops

from benchmarks import common
from l2o.config import load_file, resolve
from l2o.estimators.es import PES, TruncatedES, repeat_state
from l2o.trainer import MetaTrainer

CONFIG = common.config_path("pes_schedule_paper.yaml")
FIGURE = common.figure_path("pes_schedule.png")
OBJECTIVES = ("train_sum_loss", "val_sum_acc")
ESTIMATORS = {"es": TruncatedES, "pes": PES}
START = (np.log(0.003), np.log(30.0))
# The grid: log10 lr0 and log10 p, around the paper's heat maps (lr0 up to 10 here, where
# the best points of this smaller network lie).
LOG10_RATES, LOG10_POWERS = (-3.5, 1.0), (-2.0, 2.0)
# Inner runs of the grid and of the final evaluation (the runs draw theirs from their
# generators, as training does).
EVALUATION_SEED = 12345
COLOURS = {10: "#2ca02c", 100: "#d62728"}


class ScheduleProblem:
    """The vectorised truncation of ScheduledSGD at theta = (log lr0, log p), and F."""

    def __init__(self, truncations):
        self.truncations = truncations

    def unroll(self, thetas, states, steps, length):
        return self.truncations.unroll(ops.convert_to_tensor(thetas, "float32"), states,
                                       steps, length)

    def init_state(self, seed):
        return self.truncations.init_state(seed)

    def meta_objective(self, thetas, horizon, segment, seed=EVALUATION_SEED):
        """F at each row of ``thetas`` over one inner run of ``horizon`` steps (seed ``seed``),
        all rows in one batched unroll, ``segment`` steps per call: the objectives are plain
        sums over steps, so the segments' meta-losses add up."""
        thetas = np.asarray(thetas, np.float32)
        states = repeat_state(self.init_state(seed), len(thetas))
        total = np.zeros(len(thetas), np.float64)
        for start in range(0, horizon, segment):
            length = min(segment, horizon - start)
            losses, states = self.unroll(thetas, states, np.full(len(thetas), start), length)
            total += ops.convert_to_numpy(losses)
        return total


def inner_problem(objective, args):
    """The paper config's inner problem at this benchmark's scale."""
    overrides = [f"training/meta_objective={objective}", f"estimator/horizon={args.horizon}",
                 f"network/decay_steps={float(args.horizon)}",
                 f"problems/0/kwargs/layers=[{args.width}]",
                 f"problems/0/kwargs/batch_size={args.batch_size}",
                 f"estimator/n_particles={args.particles}"]
    trainer = MetaTrainer(resolve(load_file(CONFIG), overrides))
    return ScheduleProblem(trainer.estimators[0].truncations)


def optimise(system, estimator, truncation, args, seed=0):
    """The path of theta under ``args.iterations`` outer Adam steps: [iterations + 1, 2]."""
    population = ESTIMATORS[estimator](system.unroll, system.init_state, sigma=args.sigma,
                                       n_particles=args.particles, horizon=args.horizon)
    theta = keras.Variable(np.array(START, np.float32))
    adam = keras.optimizers.Adam(args.outer_lr)
    path, generator = [theta.numpy().copy()], np.random.default_rng(seed)
    for _ in range(args.iterations):
        gradient, _ = population.estimate(theta.numpy(), generator, truncation)
        if not np.all(np.isfinite(gradient)):
            # A diverged inner run: the path stops where it was (reported, not hidden).
            print(f"  {estimator} K={truncation}: non-finite estimate after "
                  f"{len(path) - 1} iterations; stopped")
            break
        adam.apply([ops.convert_to_tensor(gradient, "float32")], [theta])
        path.append(theta.numpy().copy())
    return np.array(path)


def grid_axes(points):
    return (np.linspace(*LOG10_POWERS, points), np.linspace(*LOG10_RATES, points))


def grid_thetas(points):
    """The grid's thetas (log lr0, log p), row-major over (log10 lr0, log10 p): [G*G, 2]."""
    powers, rates = grid_axes(points)
    log10_rate, log10_power = np.meshgrid(rates, powers, indexing="ij")
    return np.log(10.0) * np.stack([log10_rate.ravel(), log10_power.ravel()], axis=1)


def grid_values(system, args):
    """F on the G x G grid, [rate index, power index]; ``--grid-chunk`` particles a call."""
    thetas = grid_thetas(args.grid)
    values = np.concatenate([system.meta_objective(thetas[first:first + args.grid_chunk],
                                                   args.horizon, args.segment)
                             for first in range(0, len(thetas), args.grid_chunk)])
    return values.reshape(args.grid, args.grid)


def best_of(values):
    """(index into the flattened grid, value) of the grid's best point (NaN: diverged)."""
    index = int(np.nanargmin(values))
    return index, float(values.ravel()[index])


def shown(objective, value):
    """F as reported: the loss sum, or the accuracy sum as a positive number."""
    return value if objective == "train_sum_loss" else -value


def plot(results, args, figure_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    powers, rates = grid_axes(args.grid)
    figure, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5.5), squeeze=False)
    for ax, (objective, result) in zip(axes[0], results.items()):
        values = shown(objective, np.asarray(result["grid"]))
        if objective == "train_sum_loss":
            # Diverged points (NaN) at the top of the scale; log10 spreads the good region.
            values = np.log10(np.where(np.isfinite(values), values, np.nanmax(values)))
            label, cmap = f"log10 sum of {args.horizon} training losses", "Purples_r"
        else:
            label, cmap = f"sum of {args.horizon} validation accuracies", "Blues"
        mesh = ax.pcolormesh(powers, rates, values, cmap=cmap, shading="auto")
        figure.colorbar(mesh, ax=ax, label=label)
        for run in result["runs"]:
            path = np.asarray(run["path"]) / np.log(10.0)
            ax.plot(path[:, 1], path[:, 0], color=COLOURS.get(run["K"], "black"), lw=2.5,
                    ls="-" if run["estimator"] == "pes" else "--",
                    label=f"{run['estimator'].upper()} K={run['K']}")
            ax.plot(path[-1, 1], path[-1, 0], "o", color=COLOURS.get(run["K"], "black"),
                    mec="black")
        start = np.array(START) / np.log(10.0)
        best = grid_thetas(args.grid)[result["grid_best_index"]] / np.log(10.0)
        ax.plot(start[1], start[0], "s", color="black", ms=9, label="start")
        ax.plot(best[1], best[0], "*", ms=18, color="gold", mec="black", label="grid best")
        ax.set(xlabel="log10 p (decay power)", ylabel="log10 lr0 (initial rate)",
               title=f"{objective}: T = {args.horizon}, N = {args.particles}, "
                     f"{args.iterations} iterations")
        ax.legend(loc="lower left", fontsize=8)
    os.makedirs(os.path.dirname(figure_path), exist_ok=True)
    figure.savefig(figure_path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def table(results, args):
    heading = (f"MNIST MLP 784-{args.width}-10, batch {args.batch_size}, SGD momentum 0.9, "
               f"lr_t = lr0 / (1 + t/{args.horizon})^p; T = {args.horizon}, N = "
               f"{args.particles}, sigma {args.sigma}, {args.iterations} outer Adam "
               f"({args.outer_lr}) iterations from lr0 = 0.003, p = 30; grid {args.grid} x "
               f"{args.grid}\n")
    columns = ("| objective | run | final lr0 | final p | F at final (full T) | F at start | "
               "grid best F (lr0, p) | seconds |")
    lines = [heading, columns, "| --- " * 8 + "|"]
    for objective, result in results.items():
        best_rate, best_power = np.exp(grid_thetas(args.grid)[result["grid_best_index"]])
        for run in result["runs"]:
            rate, power = np.exp(run["path"][-1])
            lines.append(
                f"| {objective} | {run['estimator'].upper()} K={run['K']} | {rate:.4g} | "
                f"{power:.4g} | {shown(objective, run['final']):.5g} | "
                f"{shown(objective, result['start']):.5g} | "
                f"{shown(objective, result['grid_best']):.5g} ({best_rate:.3g}, "
                f"{best_power:.3g}) | {run['seconds']:.0f} |")
    return "\n".join(lines)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, seconds")
    parser.add_argument("--horizon", type=int, default=1000, help="T, inner steps")
    parser.add_argument("--truncations", type=int, nargs="+", default=[10, 100], help="K")
    parser.add_argument("--particles", type=int, default=32, help="N (even)")
    parser.add_argument("--iterations", type=int, default=400, help="outer Adam steps")
    parser.add_argument("--sigma", type=float, default=0.1)
    # 3x the paper's 1e-2: 400 iterations then cover about the distance of its first ~1200.
    parser.add_argument("--outer-lr", type=float, default=0.03)
    parser.add_argument("--width", type=int, default=10, help="MLP hidden units")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grid", type=int, default=40, help="G: a G x G grid")
    parser.add_argument("--grid-chunk", type=int, default=400, help="grid points per call")
    parser.add_argument("--segment", type=int, default=100,
                        help="steps per batched call when evaluating over the full T")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--out", default=None, help="folder for pes_schedule.json and .md")
    parser.add_argument("--figure", default=FIGURE)
    args = parser.parse_args(argv)
    if args.quick:
        args.horizon, args.truncations, args.particles, args.iterations = 40, [5, 20], 16, 5
        args.width, args.batch_size, args.grid, args.segment = 8, 16, 6, 20
    return args


def main(argv=None):
    args = parse(argv)
    results = {}
    for objective in args.objectives:
        system = inner_problem(objective, args)
        started = time.perf_counter()
        grid = grid_values(system, args)
        index, best = best_of(grid)
        print(f"{objective}: {args.grid} x {args.grid} grid over T = {args.horizon} in "
              f"{time.perf_counter() - started:.0f} s; best {shown(objective, best):.5g}",
              flush=True)
        runs = []
        for truncation in args.truncations:
            for estimator in ESTIMATORS:
                started = time.perf_counter()
                path = optimise(system, estimator, truncation, args)
                runs.append({"estimator": estimator, "K": truncation, "path": path,
                             "seconds": time.perf_counter() - started})
                print(f"  {estimator} K={truncation}: theta {path[-1]} after "
                      f"{runs[-1]['seconds']:.0f} s", flush=True)
        finals = system.meta_objective(
            np.stack([np.array(START)] + [run["path"][-1] for run in runs]), args.horizon,
            args.segment)
        for run, final in zip(runs, finals[1:]):
            run["final"] = float(final)
        results[objective] = {"grid": grid, "grid_best_index": index, "grid_best": best,
                              "start": float(finals[0]), "runs": runs}
    plot(results, args, args.figure)
    markdown = table(results, args)
    print("\n" + markdown + f"\n\nfigure: {os.path.relpath(args.figure, common.ROOT)}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "pes_schedule.md"), "w") as handle:
            handle.write(markdown + "\n")
        with open(os.path.join(args.out, "pes_schedule.json"), "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle,
                      default=lambda value: np.asarray(value).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())

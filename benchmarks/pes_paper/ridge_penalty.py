"""Tuning an L2 penalty with K = 1 truncations (Vicol et al. 2021, "UCI regression"): ES vs PES.

    python -m benchmarks.pes_paper.ridge_penalty [--iterations 6000] [--quick]

The inner problem (``l2o/systems/ridge.py``): a linear regressor on the
diabetes set's degree-2 polynomial features (scikit-learn's bundled copy; 60
training rows, 382 validation rows) trained by T = 2000 steps of gradient
descent (lr 0.001) on the training loss + exp(theta) ||w||^2; the
meta-objective F(theta) is the validation loss summed over the T steps. A
1-D grid of F over theta in [-6, 6] gives the optimum theta*. From each start
theta_0 in {5, 3, 1, -1, -3, -5}, truncated ES and PES (N = 10 particles,
sigma 0.1, K = 1: one inner step per outer step) drive Adam (lr 0.003) on
theta. Truncated ES sees only the next step's validation loss, a greedy,
biased objective; PES's estimates, summed over a horizon, are unbiased for
dF/dtheta. The benchmark prints each run's final theta and its mean over the
last 10% of iterations against theta*, with the excess meta-objective
F(mean)/F(theta*) - 1 (F interpolated on the grid), and draws the
trajectories to benchmarks/figures/pes_uci.png.
"""

import argparse
import os
import time

import keras
import numpy as np
from keras import ops

from benchmarks import common
from l2o import backend
from l2o.estimators.es import PES, TruncatedES
from l2o.systems.ridge import diabetes_split, ridge_system

K = 1
STARTS = (5.0, 3.0, 1.0, -1.0, -3.0, -5.0)
FIGURE = common.figure_path("pes_uci.png")
COLOURS = {"es": "#ff7f0e", "pes": "#1f77b4"}


def grid_optimum(system, points):
    """(grid thetas, F on them, theta*): F of the full horizon on a 1-D grid over [-6, 6]."""
    thetas = np.linspace(-6.0, 6.0, points, dtype=np.float32)
    values = ops.convert_to_numpy(system.meta_objective(ops.convert_to_tensor(thetas[:, None])))
    # Past the rate's stability limit the inner run diverges: such thetas are never best.
    values = np.where(np.isfinite(values), values, np.inf)
    return thetas, values, float(thetas[np.argmin(values)])


def estimator(kind, system, particles, sigma):
    compiled = backend.compile_fn(lambda thetas, states, steps: system.unroll(
        thetas, states, steps, K))
    population = PES if kind == "pes" else TruncatedES
    return population(lambda thetas, states, steps, length: compiled(thetas, states, steps),
                      system.initial_state, sigma=sigma, n_particles=particles,
                      horizon=system.horizon)


def trajectory(estimate, start, iterations, learning_rate, seed=0):
    """theta after each of ``iterations`` Adam steps on ``estimate``'s gradients."""
    theta = keras.Variable(np.array([start], np.float32))
    adam = keras.optimizers.Adam(learning_rate)
    adam.build([theta])
    # Eager Keras steps would cost more than the K = 1 truncations they follow.
    adam_step = backend.compile_fn(lambda gradient: adam.apply([gradient], [theta]),
                                   variables=[theta, *adam.variables])
    generator, path = np.random.default_rng(seed), [start]
    for _ in range(iterations):
        gradient, _ = estimate.estimate(theta.numpy(), generator, K)
        adam_step(ops.convert_to_tensor(gradient, "float32"))
        path.append(float(theta.numpy()[0]))
    return np.array(path)


def plot(paths, optimum, horizon, figure_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for (kind, start), path in paths.items():
        ax.plot(path, color=COLOURS[kind], lw=1.5,
                label=("PES" if kind == "pes" else "truncated ES") if start == STARTS[0] else None)
    ax.axhline(optimum, color="black", ls="--", lw=1, label=f"theta* = {optimum:.2f} (grid)")
    ax.set(xlabel=f"outer iteration (K = {K}; the inner run restarts every T = {horizon})",
           ylabel="theta = log L2 coefficient",
           title="L2 penalty tuned by ES and PES, diabetes (degree-2 features)")
    ax.legend()
    os.makedirs(os.path.dirname(os.path.abspath(figure_path)), exist_ok=True)
    figure.savefig(figure_path, dpi=110, bbox_inches="tight")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--horizon", type=int, default=2000, help="T, inner steps per run")
    parser.add_argument("--particles", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--outer-lr", type=float, default=0.003, help="Adam's, on theta")
    parser.add_argument("--inner-lr", type=float, default=0.001)
    parser.add_argument("--grid-points", type=int, default=241)
    parser.add_argument("--figure", default=FIGURE)
    parser.add_argument("--quick", action="store_true",
                        help="T = 100 (inner lr 0.01), 400 iterations at outer lr 0.03, starts +-3")
    args = parser.parse_args(argv)
    starts = STARTS
    if args.quick:
        # A 100-step run at 10x the rate trains about as far as 1000 steps at lr 0.001
        # (gradient descent moves by about lr * steps), which keeps theta* inside.
        args.horizon, args.inner_lr, args.iterations, args.grid_points = 100, 0.01, 400, 61
        args.outer_lr, starts = 0.03, (3.0, -3.0)

    system = ridge_system(diabetes_split(), args.inner_lr, args.horizon)
    thetas, values, optimum = grid_optimum(system, args.grid_points)
    print(f"grid of F over [-6, 6] ({args.grid_points} points): theta* = {optimum:.2f}, "
          f"F(theta*) = {values.min():.4g} (F/T = {values.min() / args.horizon:.4f})")
    print(f"{args.iterations} Adam steps (lr {args.outer_lr}) on K = {K} truncations, T = "
          f"{args.horizon}, N = {args.particles}, sigma {args.sigma}\n")
    print("| method | start theta | final theta | mean theta, last 10% | |mean - theta*| "
          "| F(mean) / F(theta*) - 1 | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    paths, results = {}, {}
    for kind in ("es", "pes"):
        # Each start draws its own noise: with one seed, runs that meet follow one path.
        for seed, start in enumerate(starts):
            started = time.perf_counter()
            path = trajectory(estimator(kind, system, args.particles, args.sigma), start,
                              args.iterations, args.outer_lr, seed)
            paths[kind, start] = path
            late = float(np.mean(path[-max(1, len(path) // 10):]))
            results[kind, start] = late
            excess = np.interp(late, thetas, values) / values.min() - 1
            print(f"| {kind} | {start:g} | {path[-1]:.3f} | {late:.3f} | "
                  f"{abs(late - optimum):.3f} | {100 * excess:.2f}% | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)
    plot(paths, optimum, args.horizon, args.figure)
    print(f"\nfigure: {os.path.relpath(args.figure)}")
    return {"optimum": optimum, "grid": (thetas, values), "paths": paths, "final": results}


if __name__ == "__main__":
    main()

"""Toy 2-D regression (Vicol et al. 2021, section 5.2): where TBPTT, RTRL, UORO, ES and PES end.

    python -m benchmarks.pes_paper.toy_regression [--iterations 3000]

Meta-parameters theta = (theta0, theta1) set the inner SGD schedule
lr_t = (1 - t/T) e^theta0 + (t/T) e^theta1 (see ``l2o/systems/toy2d.py``); the
meta-objective is the sum of the T = 100 inner losses. Every method starts at
theta = (-4, -4), sees truncations of K = 10 steps of one inner run that restarts
after T steps, and takes Adam (lr 0.01) steps on its estimate: TBPTT (exact
gradient of the truncation, state held fixed), RTRL (the exact influence carried
across truncations; exact over a horizon but for theta moving during it), UORO
(its unbiased rank-one estimate), truncated ES (N = 100, sigma 1.0) and PES
(N = 100, sigma 0.3), all on ``toy2d.SYSTEM`` through the one
``estimate(theta, generator, length)`` of ``l2o.estimators.online``. The
benchmark evaluates the meta-objective on a
100 x 100 grid over [-5, 5]^2, prints each method's final theta and its
meta-objective against the grid's best, and draws the trajectories over the
grid's heat map to benchmarks/figures/toy_regression.png.
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
from l2o.estimators.online import RTRL, UORO, OnlineTBPTT
from l2o.systems import toy2d

K, START = 10, (-4.0, -4.0)
FIGURE = common.figure_path("toy_regression.png")
COLOURS = {"tbptt": "#d62728", "rtrl": "#1f77b4", "uoro": "#9467bd", "es": "#ff7f0e",
           "pes": "#ffffff"}


def grid(points=100):
    axis = np.linspace(-5.0, 5.0, points, dtype=np.float32)
    thetas = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1).reshape(-1, 2)
    values = toy2d.SYSTEM.meta_objective(ops.convert_to_tensor(thetas))
    return axis, ops.convert_to_numpy(values).reshape(points, points)


def estimators(particles):
    compiled = backend.compile_fn(lambda thetas, states, steps: toy2d.SYSTEM.unroll(
        thetas, states, steps, K))

    def es_family(kind, sigma):
        return kind(lambda thetas, states, steps, length: compiled(thetas, states, steps),
                    toy2d.initial_state, sigma=sigma, n_particles=particles,
                    horizon=toy2d.HORIZON)

    return {"tbptt": OnlineTBPTT(toy2d.SYSTEM), "rtrl": RTRL(toy2d.SYSTEM),
            "uoro": UORO(toy2d.SYSTEM), "es": es_family(TruncatedES, 1.0),
            "pes": es_family(PES, 0.3)}


def optimise(estimator, iterations, learning_rate, seed=0):
    theta = keras.Variable(np.array(START, np.float32))
    adam = keras.optimizers.Adam(learning_rate)
    path, generator = [theta.numpy().copy()], np.random.default_rng(seed)
    for _ in range(iterations):
        gradient, _ = estimator.estimate(theta.numpy(), generator, K)
        if not np.all(np.isfinite(gradient)):
            break
        adam.apply([ops.convert_to_tensor(gradient, "float32")], [theta])
        path.append(theta.numpy().copy())
    return np.array(path)


def plot(axis, values, paths, best):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 6))
    mesh = ax.pcolormesh(axis, axis, np.log10(np.where(np.isfinite(values), values, np.nan)),
                         cmap="viridis", shading="auto")
    figure.colorbar(mesh, label="log10 meta-objective (sum of 100 inner losses)")
    for name, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], color=COLOURS[name], lw=2, label=name)
        ax.plot(*path[-1], "o", color=COLOURS[name], mec="black")
    ax.plot(*START, "s", color="black", label="start")
    ax.plot(*best, "*", ms=16, color="gold", mec="black", label="grid best")
    ax.set(xlabel="theta0 (log initial rate)", ylabel="theta1 (log final rate)",
           title="Toy 2-D regression: meta-optimisation paths (K = 10, T = 100)")
    ax.legend(loc="upper left")
    os.makedirs(os.path.dirname(FIGURE), exist_ok=True)
    figure.savefig(FIGURE, dpi=110, bbox_inches="tight")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    axis, values = grid()
    index = np.unravel_index(np.nanargmin(values), values.shape)
    best_value, best = values[index], (axis[index[1]], axis[index[0]])
    print(f"grid 100x100 over [-5, 5]^2: best meta-objective {best_value:.4g} at theta = "
          f"({best[0]:.2f}, {best[1]:.2f}); start (-4, -4): "
          f"{float(toy2d.SYSTEM.meta_objective(ops.convert_to_tensor([START]))[0]):.4g}")
    print(f"{args.iterations} Adam steps (lr {args.lr}) on truncations of K = {K}, T = "
          f"{toy2d.HORIZON}, N = {args.particles}\n")
    print("| method | final theta | meta-objective | ratio to grid best | seconds |")
    print("| --- | --- | --- | --- | --- |")
    paths = {}
    for name, estimator in estimators(args.particles).items():
        started = time.perf_counter()
        paths[name] = optimise(estimator, args.iterations, args.lr)
        final = paths[name][-1]
        value = float(toy2d.SYSTEM.meta_objective(ops.convert_to_tensor(final[None]))[0])
        print(f"| {name} | ({final[0]:.3f}, {final[1]:.3f}) | {value:.4g} | "
              f"{value / best_value:.3f} | {time.perf_counter() - started:.0f} |")
    plot(axis, values, paths, best)
    print(f"\nfigure: {os.path.relpath(FIGURE)}")


if __name__ == "__main__":
    main()

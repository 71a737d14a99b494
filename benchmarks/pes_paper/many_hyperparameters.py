"""Tuning several continuous and discrete hyperparameters (Vicol et al. 2021): PES vs ES vs random.

    python -m benchmarks.pes_paper.many_hyperparameters [--quick]

SGD with momentum trains a 5-layer ReLU MLP on MNIST (the paper: Fashion-MNIST, which
cannot be read offline here); per layer k = 1..5 it has three hyperparameters,
ScheduledSGD's (``l2o/optimizers/scheduled_sgd.py``, ``configs/pes_many_hyperparameters.yaml``):

    lr_k = exp(a_k),   beta_k = sigmoid(m_k),   u_k = 1[c_k > 0]      (theta: 15 numbers)
    v_t = beta_k v_{t-1} + g_t,   update_t = -u_k lr_k v_t,

the switch u_k (is layer k trained at all?) being this toolkit's reading of the paper's
``mask:fixed``. The meta-objective is val_sum_loss over a whole inner run of T steps,

    F(theta) = sum_{t=1..T} loss(params_t, v_t)       (v_t: a validation minibatch),

averaged over ``--eval-runs`` fixed inner runs (initial parameters and batches of seeds
EVAL_SEEDS), the same for every method. A (truncation's or run's) sum whose per-step mean
exceeds DIVERGED_STEP_LOSS, or is not finite, counts as DIVERGED_STEP_LOSS per step, so
that diverged settings score badly but finitely.

Three methods, each at seeds 3, 5, 7, 11 (seed: the random draws, the ES/PES noise and
inner runs):

- random search: ``--points`` settings theta drawn uniformly from RANGES, each scored by
  F, vectorised as particles over the full T; compute T x eval-runs inner steps a point;
- truncated ES and PES, K = 10, N = 10, sigma 0.3, Adam 1e-2 on their estimates, from a
  random theta drawn from RANGES (the paper's ``--random_hparam_init``; ES and PES of
  one seed start from the same theta), for
  ``--iterations`` truncations (compute (N + 1) K and N K inner steps each: ES also
  carries its unperturbed state); every ``--eval-every`` truncations F(theta) is
  measured (not counted as compute), as the paper's ``eval_every``.

Scale (defaults; one CPU core, about 20 minutes) against the paper's: MLP 196-32-32-32-32-10
(MNIST resampled to 14 x 14; the paper: Fashion-MNIST 28 x 28), batch 100, T = 200 (1000),
1500 truncations (50,000), 750 random-search points (10,000), F over 2 inner runs (10).

Prints a markdown table (per method: the final and the best F seen, mean +- s.d. over
seeds; compute; wall time per seed) and draws the best F so far against inner steps
of compute (mean, band: min..max over seeds) to
benchmarks/figures/pes_many_hyperparameters.png.
"""

import argparse
import os
import time

import keras
import numpy as np
from keras import ops

from benchmarks import common
from l2o.config import load_file, resolve
from l2o.estimators.es import PES, TruncatedES, repeat_state
from l2o.trainer import MetaTrainer

CONFIG = common.config_path("pes_many_hyperparameters.yaml")
FIGURE = common.figure_path("pes_many_hyperparameters.png")
SEEDS = (3, 5, 7, 11)
EVAL_SEEDS = (1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009)
K, SIGMA, PARTICLES, OUTER_LR = 10, 0.3, 10, 1e-2
# Uniform ranges of the random settings (random search) and random initial values (ES,
# PES): learning rates log-uniform on [1e-3, 1], momenta sigmoid(U(-2, 3)) in
# [0.12, 0.95], each layer's switch on with probability 1/2.
RANGES = {"log_learning_rate": (np.log(1e-3), 0.0), "momentum_logit": (-2.0, 3.0),
          "update_mask_logit": (-1.0, 1.0)}
# Three times the loss of a uniform guess over MNIST's 10 classes.
DIVERGED_STEP_LOSS = 3.0 * np.log(10.0)
# Particles per vectorised call, and inner steps per call, when scoring whole runs.
EVAL_CHUNK, EVAL_SEGMENT = 64, 100
COLOURS = {"random search": "#7f7f7f", "ES": "#ff7f0e", "PES": "#1f77b4"}


def build(width, horizon, image_size):
    """The config's ScheduledSGD on MNIST, at ``width`` units per hidden layer, horizon T,
    images resampled to ``image_size`` (None: 28); returns its particle truncations."""
    raw = load_file(CONFIG)
    raw["problems"][0]["kwargs"].update(layers=[width] * 4, image_size=image_size)
    config = resolve(raw, [f"estimator/horizon={horizon}", f"estimator/n_particles={PARTICLES}",
                           f"estimator/sigma={SIGMA}", f"strategy/unroll_distribution={K}"])
    return MetaTrainer(config).estimators[0].truncations


def capped(losses, length):
    """Truncation sums with divergence counted as DIVERGED_STEP_LOSS a step (see above)."""
    losses = np.asarray(ops.convert_to_numpy(losses), np.float64)
    ceiling = DIVERGED_STEP_LOSS * length
    return np.where(np.isfinite(losses), np.minimum(losses, ceiling), ceiling)


def capped_unroll(truncations):
    """``truncations.unroll`` (the protocol of ``l2o.estimators.es``) with capped losses."""
    def unroll(thetas, states, steps, length):
        losses, states = truncations.unroll(thetas, states, steps, length)
        return capped(losses, length).astype(np.float32), states

    return unroll


def draw_thetas(truncations, generator, count):
    """``count`` settings drawn uniformly from RANGES, as flat theta vectors [count, d]."""
    groups = truncations._like[0].size
    return np.stack([truncations.flatten({
        name: generator.uniform(*RANGES[name], groups).astype(np.float32)
        for name in truncations.names}) for _ in range(count)]).astype(np.float32)


def meta_objective(truncations, thetas, horizon, eval_seeds):
    """F(theta) of each row of ``thetas`` [P, d]: val_sum_loss over T steps, averaged over
    the inner runs ``eval_seeds``; the runs' P particles share their batches."""
    thetas = np.asarray(thetas, np.float32)
    totals = np.zeros(len(thetas))
    for seed in eval_seeds:
        start = truncations.init_state(seed)
        for first in range(0, len(thetas), EVAL_CHUNK):
            chunk = thetas[first:first + EVAL_CHUNK]
            states = repeat_state(start, len(chunk))
            total = np.zeros(len(chunk))
            for step in range(0, horizon, EVAL_SEGMENT):
                length = min(EVAL_SEGMENT, horizon - step)
                losses, states = truncations.unroll(ops.convert_to_tensor(chunk), states,
                                                    np.full(len(chunk), step), length)
                total += np.asarray(ops.convert_to_numpy(losses), np.float64)
            totals[first:first + len(chunk)] += capped(total, horizon)
    return totals / len(eval_seeds)


def random_search(truncations, seed, points, horizon, eval_seeds):
    """Best F so far after each point, and the inner steps spent by then."""
    started = time.perf_counter()
    values = meta_objective(truncations, draw_thetas(truncations, np.random.default_rng(seed),
                                                     points), horizon, eval_seeds)
    compute = horizon * len(eval_seeds) * np.arange(1, points + 1)
    best = np.minimum.accumulate(values)
    # Its final setting is the best point found: what a search hands back.
    return {"compute": compute, "value": best, "points": values, "best": best,
            "seconds": time.perf_counter() - started}


def tune(truncations, method, seed, iterations, eval_every, horizon, eval_seeds):
    """ES or PES from a random theta: F every ``eval_every`` truncations (and at the end),
    the best so far, the inner steps spent by then, and the final theta."""
    started = time.perf_counter()
    generator = np.random.default_rng(seed)
    theta = keras.Variable(draw_thetas(truncations, generator, 1)[0])
    population = (TruncatedES if method == "ES" else PES)(
        capped_unroll(truncations), truncations.init_state, sigma=SIGMA,
        n_particles=PARTICLES, horizon=horizon)
    adam = keras.optimizers.Adam(OUTER_LR)
    per_truncation = (PARTICLES + (method == "ES")) * K
    checkpoints = sorted(set(range(0, iterations + 1, eval_every)) | {iterations})
    compute, values = [], []
    for iteration in range(iterations + 1):
        if iteration in checkpoints:
            compute.append(iteration * per_truncation)
            values.append(meta_objective(truncations, theta.numpy()[None], horizon,
                                         eval_seeds)[0])
        if iteration == iterations:
            break
        gradient, _ = population.estimate(theta.numpy(), generator, K)
        if np.all(np.isfinite(gradient)):
            adam.apply([ops.convert_to_tensor(gradient, "float32")], [theta])
    values = np.array(values)
    return {"compute": np.array(compute), "value": values,
            "best": np.minimum.accumulate(values), "theta": theta.numpy(),
            "seconds": time.perf_counter() - started}


def spread(values):
    values = np.asarray(values, np.float64)
    return f"{values.mean():.2f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.2f}"


def table(results, horizon, eval_runs):
    seeds = ", ".join(map(str, results["seeds"]))
    lines = [(f"F = val_sum_loss over T = {horizon} inner steps (mean of {eval_runs} fixed "
              f"inner runs); mean +- s.d. over seeds {seeds}"),
             "",
             "| method | final F | best F seen | inner steps of compute | seconds per seed |",
             "| --- | --- | --- | --- | --- |"]
    for method in [name for name in COLOURS if name in results]:
        runs = results[method]
        lines.append(
            f"| {method} | {spread([run['value'][-1] for run in runs])} | "
            f"{spread([run['best'][-1] for run in runs])} | {runs[0]['compute'][-1]:,} | "
            f"{np.mean([run['seconds'] for run in runs]):.0f} |")
    lines.append("\n(random search: final F = best F = the best of its points, scored on "
                 "the same runs; ES and PES: F of the final theta, and the best of the "
                 "periodic evaluations)")
    return "\n".join(lines)


def describe(truncations, theta):
    """A theta as its per-layer rates, momenta and switches."""
    weights = dict(zip(truncations.names, truncations.unflatten(theta)))
    rates = np.exp(weights["log_learning_rate"])
    momenta = 1.0 / (1.0 + np.exp(-weights["momentum_logit"]))
    switches = (weights["update_mask_logit"] > 0).astype(int)
    return (f"lr {np.array2string(rates, precision=3)}, momentum "
            f"{np.array2string(momenta, precision=2)}, trained {switches.tolist()}")


def plot(results, horizon, eval_runs, path=FIGURE):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for method, colour in COLOURS.items():
        if method not in results:
            continue
        runs = results[method]
        compute = runs[0]["compute"]
        best = np.stack([run["best"] for run in runs])
        ax.plot(compute, best.mean(axis=0), color=colour, lw=2, label=method,
                drawstyle="steps-post")
        ax.fill_between(compute, best.min(axis=0), best.max(axis=0), color=colour,
                        alpha=0.2, step="post")
    ax.set(xscale="log", xlabel="inner steps of compute",
           ylabel=f"best val_sum_loss so far (T = {horizon})",
           title=f"Many hyperparameters (15), MNIST MLP: mean and min..max over "
                 f"{len(results['seeds'])} seeds")
    ax.legend()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def run(args):
    """Every method of ``args.methods`` at every seed: ``{"seeds", method: [per seed]}``."""
    truncations = build(args.width, args.horizon, args.image_size)
    eval_seeds = EVAL_SEEDS[:args.eval_runs]
    results = {"seeds": args.seeds, "truncations": truncations}
    for seed in args.seeds:
        for method in ("ES", "PES"):
            if method not in args.methods:
                continue
            outcome = tune(truncations, method, seed, args.iterations, args.eval_every,
                           args.horizon, eval_seeds)
            results.setdefault(method, []).append(outcome)
            print(f"seed {seed} {method}: F {outcome['value'][-1]:.2f} (best "
                  f"{outcome['best'][-1]:.2f}), {describe(truncations, outcome['theta'])}; "
                  f"{outcome['seconds']:.0f} s", flush=True)
        if "random search" in args.methods:
            outcome = random_search(truncations, seed, args.points, args.horizon, eval_seeds)
            results.setdefault("random search", []).append(outcome)
            print(f"seed {seed} random search: best F {outcome['best'][-1]:.2f} of "
                  f"{args.points} points; {outcome['seconds']:.0f} s", flush=True)
    return results


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run in seconds")
    parser.add_argument("--width", type=int, default=32, help="units per hidden layer")
    parser.add_argument("--image-size", type=int, default=14,
                        help="MNIST resampled to s x s (28: as stored)")
    parser.add_argument("--horizon", type=int, default=200, help="T, inner steps per run")
    parser.add_argument("--iterations", type=int, default=1500,
                        help="ES/PES truncations (outer iterations)")
    parser.add_argument("--eval-every", type=int, default=75)
    parser.add_argument("--eval-runs", type=int, default=2)
    parser.add_argument("--points", type=int, default=750, help="random-search settings")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", choices=list(COLOURS), default=list(COLOURS))
    parser.add_argument("--figure", default=FIGURE)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.image_size, args.horizon, args.iterations = 8, 7, 20, 6
        args.eval_every, args.eval_runs, args.points, args.seeds = 3, 1, 6, [3]
    args.image_size = None if args.image_size == 28 else args.image_size
    return args


def main(argv=None):
    args = parse(argv)
    started = time.perf_counter()
    results = run(args)
    print()
    print(table(results, args.horizon, args.eval_runs))
    plot(results, args.horizon, args.eval_runs, args.figure)
    print(f"\nfigure: {os.path.relpath(args.figure, common.ROOT)}; total {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()

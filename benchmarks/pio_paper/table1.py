"""PIO's Table 1 under the paper's protocol: sweep, then seed runs at the best point.

    python -m benchmarks.pio_paper.table1 [--problems carrillo,moons,mnist,carrillo-b2]
        [--optimizers pio,pio-grad,pis-mc,sgd,adam,adagrad] [--blocks plain,lrscheduled]
        [--quick] [--metric final|min] [--fresh] [--table-only] [--out DIR] [--figure PATH]

For each problem (those of ``min_loss_sweep.py``: Carrillo d = 2, two moons 2-10-1, MNIST-MLP
784-20-10, and, not run by default, the fair version of Carrillo: ``carrillo-b2``, its
optimum moved from 0, where PIO's paths start and its prior is centred, to B = 2, with
Carrillo's sweep settings), optimiser and block, as the PIO repository's
``run_all_results.py`` does:

1. Sweep: ``points`` settings drawn by a seeded random search (the repository uses
   Nevergrad's optimiser over the same ranges; Nevergrad is not used here), each trained
   for ``sweep_steps`` steps from seed 0. Ranges, log-uniform: learning rate
   [1e-4, 0.1]; batch size [16, 128] (Carrillo: 1, it has no data); gradient-norm clip
   [0.01, 4.95] (Keras's ``clipnorm``; l2o's PIO has no clip on its drift network's
   gradients, so PIO points have none); PIO's sigma [1e-4, 0.1] (plain block) or, in
   the lrscheduled block, sigma = sigma_factor * lr_t with sigma_factor in [0.01, 10].
   A run's score is (``--metric final``, the repository's) the test loss after its last
   step, V_test(w_T), or (``--metric min``, min_loss_sweep.py's) min_t V_test(w_t); a
   non-finite loss counts as +inf. Both are recorded; the sweep picks by the chosen one.
2. Seeds: the point with the lowest score is run from seeds 1..S (S = 10, MNIST 5) for
   100 steps; the cell is mean ± s.d. (ddof 0, as the repository's viz.py) over seeds.

Blocks: ``plain`` = 32 points x 32 steps; ``lrscheduled`` = 64 points x 64 steps with
plateau annealing, the repository's ``ReduceLROnPlateau(mode="min", factor=0.5,
patience=8)`` on the training loss: with best = min of the losses seen so far, a loss
L_t counts as an improvement when L_t < best * (1 - 1e-4); after more than 8 steps in
a row without one, lr <- lr / 2 and the count restarts. PIO's sigma follows its learning
rate (``tie_sigma_to_learning_rate``: sigma_t = sigma_factor * lr_t), so both halve.
The monitored loss is each step's training-batch loss V at the weights before the step,
and the rule is applied every step (``--anneal-every N``: to the mean of each N steps'
losses; the repository's Lightning scheduler, with no ``interval`` given, steps once per
epoch of its training data, 1000 rows on Carrillo and 20,000 on moons, i.e. not within
100 steps at batch sizes above 10).

``lrscheduled-alldims`` (not run by default) is the lrscheduled block with the dimensions
the repository also sweeps in it: PIO's t_end [1, 10], drift-network depth {1, 2} and
batch_laps {1, 4, 16} (``drift_steps`` here), Adam's beta_1 [0.81, 0.98] and beta_2
[0.91, 0.9998] (log-uniform); its table cells are compared with the published 64/64 ones.

PIO-Grad (PIS-Grad's drift, ``drift_format: grad``) and PIS-MC (``mc``, no network) are
not in the paper's Table 1; they run PIO's sweep (PIS-MC's drawn learning rate acts only
through sigma's tie to it, i.e. in the lrscheduled block). Sampler settings are
``min_loss_sweep.PIO_SAMPLER``'s per variant (the repository's config on Carrillo; fewer
trajectories and a coarser dt where a variant's step cost demands it; on MNIST 8
trajectories, dt 0.25). Results are cached as JSON per
(problem, optimiser, block, metric) under ``benchmarks/out/pio_paper/``; ``--table-only``
prints the table beside the published numbers from them and draws
``benchmarks/figures/pio_paper_<metric>.png``. Moons and MNIST have one held-out split
here (the repository draws separate validation and test sets); the sweep scores it too.
"""

import argparse
import json
import math
import os
import sys
import time

import keras
import numpy as np
from keras import ops

from benchmarks import common
from benchmarks.pio_paper import min_loss_sweep as compare
from l2o import backend, problems
from l2o.optimizers.pio import PIOOptimizer, sde

OPTIMIZERS = {"pio": "PIO", "pio-grad": "PIO-Grad", "pis-mc": "PIS-MC", "sgd": "SGD",
              "adam": "Adam", "adagrad": "Adagrad"}
PROBLEM_NAMES = {key: compare.PROBLEMS[key][0] for key in ("carrillo", "moons", "mnist",
                                                            "carrillo-b2")}
# The random search's stream per problem and optimiser, fixed so that adding a row leaves the
# others' draws alone. Carrillo with B = 2 draws Carrillo's settings: only the optimum moves.
PROBLEM_STREAMS = {"carrillo": 0, "mnist": 1, "moons": 2, "carrillo-b2": 0}
OPTIMIZER_STREAMS = {"adagrad": 0, "adam": 1, "pio": 2, "sgd": 3, "pio-grad": 4, "pis-mc": 5}
# (points, sweep steps, plateau annealing) per block, as run_all_results.py. Not run by
# default: "lrscheduled-alldims", the lrscheduled block with the dimensions the repository
# also sweeps there (``ALL_DIMS``).
BLOCKS = {"plain": (32, 32, False), "lrscheduled": (64, 64, True),
          "lrscheduled-alldims": (64, 64, True)}
QUICK_BLOCKS = {name: (3, 3, annealed) for name, (_, _, annealed) in BLOCKS.items()}
BLOCK_STREAMS = {"lrscheduled": 0, "plain": 1, "lrscheduled-alldims": 2}
SEED_STEPS, QUICK_SEED_STEPS = 100, 30  # quick: long enough for a plateau
RANGES = {"learning_rate": (1e-4, 0.1), "batch_size": (16, 128), "clipnorm": (0.01, 4.95),
          "sigma": (1e-4, 0.1), "sigma_factor": (0.01, 10.0)}
PLATEAU_FACTOR, PLATEAU_PATIENCE, PLATEAU_THRESHOLD = 0.5, 8, 1e-4
# run_all_results.py's extra dimensions in its 64/64 block: PIO ("pis") t_end uniform in
# [1, 10] (here rounded to whole steps of the sampler's dt), drift-network depth
# range(1, 3) and batch_laps (drift updates per step) in {1, 4, 16}; Adam's betas
# log-uniform. PIO-Grad, a PIO drift, gets PIO's.
ALL_DIMS = {"pio": ("t_end", "layers", "drift_steps"),
            "pio-grad": ("t_end", "layers", "drift_steps"), "adam": ("beta_1", "beta_2")}

# The paper's Table 1: (mean, s.d.) of the min test loss.
PUBLISHED = {
    "plain": {"adagrad": {"carrillo": (0.549, 0.153), "moons": (0.184, 0.036),
                          "mnist": (0.425, 0.031)},
              "adam": {"carrillo": (0.597, 0.536), "moons": (0.057, 0.047),
                       "mnist": (0.476, 0.030)},
              "sgd": {"carrillo": (0.491, 0.125), "moons": (0.356, 0.019),
                      "mnist": (0.427, 0.034)},
              "pio": {"carrillo": (1.458, 0.882), "moons": (0.129, 0.121),
                      "mnist": (2.464, 0.026)}},
    "lrscheduled": {"adagrad": {"carrillo": (0.647, 0.448), "moons": (0.193, 0.038),
                                "mnist": (0.347, 0.020)},
                    "adam": {"carrillo": (0.498, 0.000), "moons": (0.022, 0.010),
                             "mnist": (0.346, 0.020)},
                    "sgd": {"carrillo": (0.553, 0.149), "moons": (0.428, 0.026),
                            "mnist": (0.385, 0.011)},
                    "pio": {"carrillo": (0.404, 0.417), "moons": (0.032, 0.049),
                            "mnist": (2.424, 0.045)}},
}


class PlateauHalving:
    """ReduceLROnPlateau's rule in mode "min" with a relative threshold and no cooldown:
    ``update(loss)`` says whether the learning rate is to be scaled by ``factor`` now."""

    def __init__(self, patience=PLATEAU_PATIENCE, threshold=PLATEAU_THRESHOLD):
        self.patience, self.threshold = patience, threshold
        self.best, self.steps_without_improvement = math.inf, 0

    def update(self, loss):
        if loss < self.best * (1 - self.threshold):
            self.best, self.steps_without_improvement = loss, 0
        else:
            self.steps_without_improvement += 1
        if self.steps_without_improvement > self.patience:
            self.steps_without_improvement = 0
            return True
        return False


def log_uniform(rng, low, high):
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_points(problem_key, optimizer_key, block, count):
    """The random search's ``count`` settings, the same on every invocation."""
    rng = np.random.default_rng([PROBLEM_STREAMS[problem_key], OPTIMIZER_STREAMS[optimizer_key],
                                 BLOCK_STREAMS[block]])
    points = []
    for _ in range(count):
        point = {"learning_rate": log_uniform(rng, *RANGES["learning_rate"]),
                 "batch_size": 1 if problem_key.startswith("carrillo") else round(
                     log_uniform(rng, *RANGES["batch_size"]))}
        if optimizer_key in compare.PIO_FORMATS:
            name = "sigma_factor" if BLOCKS[block][2] else "sigma"
            point[name] = log_uniform(rng, *RANGES[name])
        else:
            point["clipnorm"] = log_uniform(rng, *RANGES["clipnorm"])
        if block == "lrscheduled-alldims":
            point.update(extra_dims(rng, problem_key, optimizer_key))
        points.append(point)
    return points


def extra_dims(rng, problem_key, optimizer_key):
    names = ALL_DIMS.get(optimizer_key, ())
    if "t_end" in names:
        dt = compare.PIO_SAMPLER[problem_key][optimizer_key].get("dt", sde.DT)
        return {"t_end": dt * max(1, round(rng.uniform(1.0, 10.0) / dt)),
                "layers": int(rng.integers(1, 3)), "drift_steps": int(rng.choice([1, 4, 16]))}
    if names:
        return {"beta_1": log_uniform(rng, 0.81, 0.98), "beta_2": log_uniform(rng, 0.91, 0.9998)}
    return {}


def make_problem(problem_key, batch_size):
    if problem_key.startswith("carrillo"):
        return compare.PROBLEMS[problem_key][1]()
    if problem_key == "moons":
        return problems.TwoMoons(batch_size=batch_size)
    return problems.MLPClassifier(layers=[20], activation="relu", dataset="mnist",
                                  batch_size=batch_size)


def pio_settings(problem_key, optimizer_key, point):
    """``min_loss_sweep.reset_pio``'s settings: sigma fixed, or tied to the learning rate."""
    tied = "sigma_factor" in point
    sigma = point["sigma_factor"] * point["learning_rate"] if tied else point["sigma"]
    network = {"drift_format": compare.PIO_FORMATS[optimizer_key][1], "sigma": sigma,
               "sigma_rescaling": "none", "tie_sigma_to_learning_rate": tied,
               **compare.PIO_SAMPLER[problem_key][optimizer_key],
               **{name: point[name] for name in ALL_DIMS["pio"] if name in point}}
    return {"network": network, "learning_rate": point["learning_rate"]}


def run_point(problem_key, optimizer_key, point, seeds, steps, anneal_every):
    """Test-loss, training-loss and learning-rate curves [seeds, steps] of one setting
    (the learning rate each step ran at; the training loss it returned)."""
    problem = make_problem(problem_key, point["batch_size"])
    test_loss = compare.make_test_loss(problem)
    curves, train, rates = (np.full((len(seeds), steps), np.nan) for _ in range(3))
    model = optimizer = train_step = None
    for row, seed in enumerate(seeds):
        params = problem.init(seed)
        if optimizer_key in compare.KERAS:  # cheap to trace: built fresh per seed
            model = problem.build_model(params)
            betas = {name: point[name] for name in ALL_DIMS["adam"] if name in point}
            optimizer = getattr(keras.optimizers, compare.KERAS[optimizer_key][1])(
                learning_rate=point["learning_rate"], clipnorm=point["clipnorm"], **betas)
            train_step = backend.make_train_step(problem.loss, model.trainable_variables,
                                                 optimizer)
        else:  # tracing PIO's step costs 50-100 of its steps: reused across seeds
            settings = pio_settings(problem_key, optimizer_key, point)
            if model is None:
                model = problem.build_model(params)
                optimizer = PIOOptimizer(network=settings["network"],
                                         learning_rate=settings["learning_rate"], seed=seed)
                optimizer.build(model.trainable_variables)
                train_step = backend.make_train_step(problem.loss, model.trainable_variables,
                                                     optimizer)
            model.set_weights(params)
            compare.reset_pio(optimizer, settings, model.trainable_variables, seed)
        optimizer.learning_rate.assign(point["learning_rate"])
        plateau = PlateauHalving() if anneal_every else None
        batches = problem.batches(seed, 0, steps)
        for step in range(steps):
            rates[row, step] = float(optimizer.learning_rate.numpy())
            train[row, step] = float(train_step(compare.to_tensors(batches, step)))
            curves[row, step] = float(test_loss(
                [ops.convert_to_tensor(v) for v in model.trainable_variables]))
            # The rule sees the mean training loss of each ``anneal_every`` steps (1: every
            # step; Lightning's default steps it once per epoch of the training data).
            if (plateau is not None and (step + 1) % anneal_every == 0 and plateau.update(
                    float(np.mean(train[row, step + 1 - anneal_every:step + 1])))):
                optimizer.learning_rate.assign(optimizer.learning_rate * PLATEAU_FACTOR)
    return curves, train, rates


def finite_or_inf(curves):
    return np.where(np.isfinite(curves), curves, np.inf)


# A run's score from its test-loss curve [runs, steps]. "final" is the repository's: its
# training script logs the test loss at the weights after the last step (PIO: of the final
# trajectory with the lowest validation loss), viz.py averages those, and Nevergrad
# minimised the same quantity on the validation split. "min" is min_loss_sweep.py's.
METRICS = {"final": lambda curves: finite_or_inf(curves)[:, -1],
           "min": lambda curves: finite_or_inf(curves).min(axis=1)}


def run_block(problem_key, optimizer_key, block, quick, metric, anneal_every=1):
    points_count, sweep_steps, annealed = (QUICK_BLOCKS if quick else BLOCKS)[block]
    anneal_every = anneal_every if annealed else 0
    seeds = list(range(1, 1 + (2 if quick else 5 if problem_key == "mnist" else 10)))
    seed_steps = QUICK_SEED_STEPS if quick else SEED_STEPS
    started = time.perf_counter()
    points = draw_points(problem_key, optimizer_key, block, points_count)
    scores = {name: [] for name in METRICS}
    for index, point in enumerate(points):
        curves, _, _ = run_point(problem_key, optimizer_key, point, [0], sweep_steps, anneal_every)
        for name, score in METRICS.items():
            scores[name].append(float(score(curves)[0]))
        print(f"[{problem_key} {optimizer_key} {block}] point {index}: {json.dumps(point)} -> "
              + ", ".join(f"{name} {values[-1]:.4g}" for name, values in scores.items()),
              flush=True)
    best = int(np.argmin(scores[metric]))
    sweep_seconds = time.perf_counter() - started
    curves, train, rates = run_point(problem_key, optimizer_key, points[best], seeds, seed_steps,
                              anneal_every)
    per_seed = {name: score(curves) for name, score in METRICS.items()}
    return {"problem": problem_key, "optimizer": optimizer_key, "block": block,
            "quick": quick, "metric": metric, "anneal_every": anneal_every, "points": points, "sweep_scores": scores[metric],
            "all_sweep_scores": scores, "sweep_steps": sweep_steps, "best_index": best,
            "seeds": seeds, "seed_steps": seed_steps, "per_seed": per_seed[metric].tolist(),
            **{f"{name}_per_seed": values.tolist() for name, values in per_seed.items()},
            # s.d. with ddof 0, as viz.py's np.std
            "mean": float(np.mean(per_seed[metric])), "sd": float(np.std(per_seed[metric])),
            "test_loss": curves.tolist(),
            "train_loss": train.tolist(), "learning_rate": rates.tolist(), "sweep_seconds": sweep_seconds,
            "seconds": time.perf_counter() - started,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def result_path(out, problem_key, optimizer_key, block, quick, metric, anneal_every=1):
    every = "" if anneal_every == 1 or block == "plain" else f"_every{anneal_every}"
    return os.path.join(out, "quick" if quick else "", problem_key,
                        f"{optimizer_key}_{block}{every}_{metric}.json")


def load(out, problem_key, optimizer_key, block, quick, metric, anneal_every=1):
    path = result_path(out, problem_key, optimizer_key, block, quick, metric, anneal_every)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def published_cell(block, optimizer_key, problem_key):
    """(mean, s.d.) of the paper's Table 1 (an annealed block's: its 64/64 block), or None:
    it has no PIO-Grad, PIS-MC or B = 2."""
    published = PUBLISHED["lrscheduled" if BLOCKS[block][2] else "plain"]
    return published.get(optimizer_key, {}).get(problem_key)


def number(mean, sd):
    return f"{mean:.3f} ± {sd:.3f}" if math.isfinite(mean) else "non-finite"


def describe(point):
    return ", ".join(f"{'bs' if k == 'batch_size' else k} {v:.3g}" for k, v in point.items()
                     if not (k == "batch_size" and v == 1))


def print_table(args):
    """Ours beside the published cells; a gap above the paper's s.d. is marked with *."""
    header = ["block", "optimiser"] + [f"{PROBLEM_NAMES[p]}: ours / published"
                                       for p in args.problems]
    print(f"\nTest loss ({args.metric}), mean ± s.d. over seed runs at the best sweep point; "
          "* = |ours - published| > the published s.d.\n")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    chosen = []
    for block in args.blocks:
        for optimizer_key in args.optimizers:
            row = [block, OPTIMIZERS[optimizer_key]]
            for problem_key in args.problems:
                published = published_cell(block, optimizer_key, problem_key)
                shown = "—" if published is None else number(*published)
                result = load(args.out, problem_key, optimizer_key, block, args.quick,
                              args.metric, args.anneal_every)
                if result is None:
                    row.append(f"not run / {shown}")
                    continue
                flag = " *" if published and not abs(result["mean"] - published[0]) <= published[
                    1] else ""
                row.append(f"{number(result['mean'], result['sd'])} / {shown}{flag}")
                chosen.append((problem_key, optimizer_key, block, result))
            print("| " + " | ".join(row) + " |")
    other = next(name for name in METRICS if name != args.metric)
    print(f"\nChosen sweep points (sweep score: {args.metric} test loss of the sweep run); "
          f"the seeds' {other} test loss at the same point; seconds for sweep + seeds\n")
    print(f"| problem | optimiser | block | chosen point | sweep score | per-seed values | "
          f"{other}, mean ± s.d. | s |")
    print("|" + " --- |" * 8)
    for problem_key, optimizer_key, block, result in chosen:
        minima = ", ".join(f"{m:.3g}" for m in result["per_seed"])
        print(f"| {problem_key} | {OPTIMIZERS[optimizer_key]} | {block} | "
              f"{describe(result['points'][result['best_index']])} | "
              f"{result['sweep_scores'][result['best_index']]:.4g} | {minima} | "
              f"{number(np.mean(result[f'{other}_per_seed']), np.std(result[f'{other}_per_seed']))}"
              f" | {result['seconds']:.0f} |")
    return chosen


def plot(args, chosen):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{OPTIMIZERS[o]}\n{b}" for b in args.blocks for o in args.optimizers]
    width = max(4.5, 0.5 * len(labels))  # room for every cell's label
    figure, axes = plt.subplots(1, len(args.problems), figsize=(width * len(args.problems), 4.2),
                                squeeze=False)
    for axis, problem_key in zip(axes[0], args.problems):
        positions = np.arange(len(labels))
        published = [(k, published_cell(b, o, problem_key)) for k, (b, o) in enumerate(
            (b, o) for b in args.blocks for o in args.optimizers)]
        published = [(k, cell) for k, cell in published if cell is not None]
        if published:
            axis.errorbar([positions[k] - 0.15 for k, _ in published],
                          [m for _, (m, _) in published], [s for _, (_, s) in published],
                          fmt="s", label="published")
        ours = {(o, b): r for p, o, b, r in chosen if p == problem_key}
        found = [(k, ours[(o, b)]) for k, (b, o) in enumerate(
            (b, o) for b in args.blocks for o in args.optimizers) if (o, b) in ours]
        axis.errorbar([positions[k] + 0.15 for k, _ in found], [r["mean"] for _, r in found],
                      [r["sd"] for _, r in found], fmt="o", label="ours")
        # Each seed run too: a mean ± s.d. hides a blow-up in one of ten.
        values = [v for _, r in found for v in r["per_seed"]]
        for k, r in found:
            axis.scatter([positions[k] + 0.3] * len(r["per_seed"]), r["per_seed"], s=6,
                         color="C1", alpha=0.6)
        finite = [v for v in values if 0 < v < math.inf]
        if finite and max(finite) > 100 * min(finite):
            axis.set_yscale("log")
        axis.set_xticks(positions, labels, fontsize=7, rotation=45, ha="right")
        axis.set_title(PROBLEM_NAMES[problem_key])
        axis.set_ylabel(f"test loss ({args.metric})")
    axes[0][0].legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.figure)), exist_ok=True)
    figure.savefig(args.figure, dpi=120)
    print(f"\nfigure: {args.figure}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="carrillo,moons,mnist")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--blocks", default="plain,lrscheduled",
                        help="also lrscheduled-alldims (the repository's extra dimensions)")
    parser.add_argument("--quick", action="store_true",
                        help="3 points x 3 steps, 2 seeds x 30 steps")
    parser.add_argument("--metric", choices=METRICS, default="final",
                        help="a run's score, for the sweep's choice and the table: the test "
                             "loss after the last step (the repository's) or its minimum "
                             "over the steps (min_loss_sweep.py's)")
    parser.add_argument("--anneal-every", type=int, default=1,
                        help="lrscheduled: apply the plateau rule to the mean training loss "
                             "of every N steps (N >= 100: it never fires in a seed run)")
    parser.add_argument("--fresh", action="store_true", help="recompute finished blocks")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--out", default=common.out_path("pio_paper"))
    parser.add_argument("--figure", default=None,
                        help="default benchmarks/figures/pio_paper_<metric>[_everyN].png")
    args = parser.parse_args(argv)
    every = "" if args.anneal_every == 1 else f"_every{args.anneal_every}"
    args.figure = args.figure or common.figure_path(f"pio_paper_{args.metric}{every}.png")
    for name, known in (("problems", PROBLEM_NAMES), ("optimizers", OPTIMIZERS),
                        ("blocks", BLOCKS)):
        setattr(args, name, getattr(args, name).split(","))
        unknown = [k for k in getattr(args, name) if k not in known]
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if not args.table_only:
        for problem_key in args.problems:
            for block in args.blocks:
                for optimizer_key in args.optimizers:
                    path = result_path(args.out, problem_key, optimizer_key, block, args.quick,
                                       args.metric, args.anneal_every)
                    if not args.fresh and os.path.exists(path):
                        print(f"[{problem_key} {optimizer_key} {block}] reused {path}")
                        continue
                    result = run_block(problem_key, optimizer_key, block, args.quick,
                                       args.metric, args.anneal_every)
                    print(f"[{problem_key} {optimizer_key} {block}] {number(result['mean'], result['sd'])}"
                          f" ({result['seconds']:.0f} s)", flush=True)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path + ".tmp", "w") as handle:
                        json.dump(result, handle)
                    os.replace(path + ".tmp", path)
    plot(args, print_table(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

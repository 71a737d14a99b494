"""PIO against gradient optimisers: minimum test loss over 100 steps, fixed sweep grids.

    python -m benchmarks.pio_paper.min_loss_sweep [--problems carrillo,moons,mnist] [--seeds 8]
        [--steps 100] [--optimizers pio,pio-grad,pis-mc,sgd,adam,adagrad] [--quick]
        [--points LABEL,...] [--fresh] [--table-only]

Problems: Carrillo (d = 2; test loss = its loss), two moons (2-10-1 tanh; loss on the
held-out 20 %) and MNIST-MLP (784-20-10 relu, batch 128; loss on the 2000 validation
images of ``$L2O_DATA/mnist``, as l2o reads ``dataset: mnist``). Optimisers: PIO (``drift_format: f``), PIO-grad
(``grad``), PIS-MC (``mc``) through ``PIOOptimizer.apply_loss``, and Keras's
SGD, Adam and Adagrad through ``optimizer.apply``, all driven by
``backend.make_train_step`` from each seed's ``problem.init(seed)`` on
``problem.batches(seed, 0, steps)``. For every sweep point and seed the test loss is
recorded after each of the ``steps`` updates; a seed's score is the minimum of those
(the initial weights are not counted), a sweep point's the mean over seeds (± standard
error), and an optimiser's the best sweep point's; the PIO variants get one row per
``sigma_rescaling`` (none, static). A second table lists every sweep point with its
final test loss, V / grad V evaluations per step and time. Each (problem, optimiser,
sweep point) is written to ``benchmarks/out/pio_compare/`` as JSON with every curve; a
finished point with the same settings is reused, so the work can be split across
invocations (``--fresh`` recomputes; ``--points`` runs only the named sweep points).
``--table-only`` prints the tables from those files. ``carrillo-b2`` (optimum at B = 2
instead of 0) is an extra problem, not run by default.

PIO's compiled step is reused across seeds (tracing it costs as much as 50-100 of its
steps): before each seed the optimiser's state is overwritten with that of a fresh
``PIOOptimizer(seed=seed)`` built on the same variables (the seed's drift
initialisation, zero Adam moments), and its iteration counter is set to
``seed * SEED_STRIDE``. The traced noise key is (0, iteration), so each seed draws its
own Brownian paths, though not the ones ``PIOOptimizer(seed=seed)`` would draw.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from benchmarks import common
from l2o import backend, problems
from l2o.optimizers.pio import PIOOptimizer, PIORule, sde

tf.get_logger().setLevel("ERROR")  # one compiled step per seed for Keras optimisers is intended

OUT = common.out_path("pio_compare")
SEED_STRIDE = 100_000  # iteration offset per seed; far above any run length used here
PUBLISHED_CARRILLO = {"PIO": 0.404, "Adam": 0.498}  # the PIO paper's table, Carrillo d = 2

PROBLEMS = {
    "carrillo": ("Carrillo (d = 2)", lambda: problems.Carrillo(dim=2)),
    # Not in the default set: the optimum moved away from 0, where PIO's paths start and
    # its prior is centred, to see how much of Carrillo's result that coincidence gives.
    "carrillo-b2": ("Carrillo (d = 2, B = 2)", lambda: problems.Carrillo(dim=2, shift=2.0)),
    "moons": ("two moons (2-10-1)", lambda: problems.TwoMoons()),
    "mnist": ("MNIST-MLP (784-20-10)", lambda: problems.MLPClassifier(
        layers=[20], activation="relu", dataset="mnist", batch_size=128)),
}
PIO_FORMATS = {"pio": ("PIO", "f"), "pio-grad": ("PIO-grad", "grad"), "pis-mc": ("PIS-MC", "mc")}
KERAS = {"sgd": ("SGD", "SGD"), "adam": ("Adam", "Adam"), "adagrad": ("Adagrad", "Adagrad")}
OPTIMIZERS = {**PIO_FORMATS, **KERAS}

# PIO's sampler settings per problem. Carrillo and two moons keep the PIO repository's
# config (32 trajectories, dt 0.05 over t_end 5, 16 MC samples) except where a variant's
# cost per step would not fit the benchmark's budget; MNIST (d = 15,910) cuts all three.
# Measured costs, ms per step on 2 shared cores: docs/results/pio_paper.md.
PIO_SAMPLER = {
    "carrillo": {"pio": {}, "pio-grad": {}, "pis-mc": {}},
    "carrillo-b2": {"pio": {}, "pio-grad": {}, "pis-mc": {}},
    "moons": {"pio": {}, "pio-grad": {"trajectories": 16, "dt": 0.1},
              "pis-mc": {"trajectories": 16, "dt": 0.1, "mc_samples": 8}},
    "mnist": {"pio": {"trajectories": 8, "dt": 0.25},
              "pio-grad": {"trajectories": 8, "dt": 0.25},
              "pis-mc": {"trajectories": 8, "dt": 0.25, "mc_samples": 4}},
}

# Sweep points. PIO: (sigma, drift learning rate, sigma_rescaling); PIS-MC has no
# network, so no learning rate. Keras: learning rates.
FULL_PIO = [(s, lr, "none") for s in (0.01, 0.1, 1.0) for lr in (1e-3, 1e-2)] + [
    (0.01, 1e-2, "static")]
SMALL_PIO = [(0.01, 1e-2, "none"), (0.1, 1e-2, "none"), (1.0, 1e-2, "none"),
             (0.01, 1e-2, "static")]
MC_POINTS = [(0.01, None, "none"), (0.1, None, "none"), (1.0, None, "none"),
             (0.01, None, "static")]
PIO_SWEEP = {
    "carrillo": {"pio": FULL_PIO, "pio-grad": SMALL_PIO, "pis-mc": MC_POINTS},
    "carrillo-b2": {"pio": FULL_PIO, "pio-grad": SMALL_PIO, "pis-mc": MC_POINTS},
    "moons": {"pio": FULL_PIO, "pio-grad": SMALL_PIO, "pis-mc": MC_POINTS},
    # MNIST: one to two points per variant, all the 25-minute budget of the full run allows.
    "mnist": {"pio": [(0.01, 1e-2, "none"), (0.01, 1e-2, "static")],
              "pio-grad": [(0.01, 1e-2, "static")], "pis-mc": [(0.01, None, "static")]},
}
RATES = {"sgd": (1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0), "adam": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
         "adagrad": (1e-3, 1e-2, 3e-2, 1e-1, 3e-1)}


def sweep(problem_key, optimizer_key, quick):
    """[(label, settings)] for one problem and optimiser."""
    if optimizer_key in KERAS:
        rates = RATES[optimizer_key][-2:-1] if quick else RATES[optimizer_key]
        return [(f"lr{rate:g}", {"learning_rate": rate}) for rate in rates]
    points = PIO_SWEEP[problem_key][optimizer_key][:1] if quick else PIO_SWEEP[
        problem_key][optimizer_key]
    format_ = PIO_FORMATS[optimizer_key][1]
    sampler = PIO_SAMPLER[problem_key][optimizer_key]
    labelled = []
    for sigma, rate, rescaling in points:
        network = {"drift_format": format_, "sigma": sigma, "sigma_rescaling": rescaling,
                   **sampler}
        label = f"sigma{sigma:g}" + ("" if rate is None else f"_lr{rate:g}") + (
            "" if rescaling == "none" else f"_{rescaling}")
        labelled.append((label, {"network": network,
                                 "learning_rate": 1e-2 if rate is None else rate}))
    return labelled


def describe(optimizer_key, settings):
    if optimizer_key in KERAS:
        return f"lr {settings['learning_rate']:g}"
    network = settings["network"]
    text = f"σ {network['sigma']:g}"
    if optimizer_key != "pis-mc":
        text += f", lr {settings['learning_rate']:g}"
    if network["sigma_rescaling"] != "none":
        text += f", {network['sigma_rescaling']}"
    return text


def evaluations_per_step(optimizer_key, settings):
    """How many times one step evaluates V or grad V on its batch (compute beside quality)."""
    if optimizer_key in KERAS:
        return "1 ∇V"
    rule = PIORule(**settings["network"])
    paths, sde_steps = rule.trajectories, sde.steps(rule.t_end, rule.dt)
    if rule.drift_format == "f":  # V at the end points of a training and a sampling pass
        return f"{paths} V, {paths} ∇V"
    if rule.drift_format == "grad":  # grad V at every SDE step of both passes
        return f"{2 * paths * sde_steps} ∇V"
    return f"{paths * sde_steps * rule.mc_samples} ∇V"  # sampling pass only, no network


def make_test_loss(problem):
    """The loss on the validation data; a problem without any (Carrillo) is scored on a
    placeholder batch, which its loss ignores."""
    validation = problem.validation_batch()
    if validation is None:
        validation = tuple(b[0] for b in problem.batches(0, 0, 1))
    validation = tuple(ops.convert_to_tensor(v) for v in validation)
    return backend.compile_fn(lambda params: problem.loss(params, validation))


def reset_pio(optimizer, settings, model_variables, seed):
    """Puts a reused PIO optimiser into the state of a fresh one for ``seed``."""
    fresh = PIOOptimizer(network=settings["network"], learning_rate=settings["learning_rate"],
                         seed=seed)
    fresh.build(model_variables)
    target, source = optimizer.variables, fresh.variables
    if [tuple(v.shape) for v in target] != [tuple(v.shape) for v in source]:
        raise RuntimeError("a fresh PIOOptimizer's state does not line up with the reused one")
    for variable, value in zip(target, source):
        variable.assign(value)
    optimizer.iterations.assign(seed * SEED_STRIDE)


def to_tensors(batches, step):
    return tuple(ops.convert_to_tensor(b[step]) for b in batches)


def run_point(problem, test_loss, optimizer_key, settings, seeds, steps):
    """Test-loss curves [seeds, steps] of one sweep point, and its timings."""
    curves = np.full((len(seeds), steps), np.nan)
    timing = {"first_call_s": [], "step_s": 0.0, "steps_timed": 0}
    model = train_step = optimizer = None
    for row, seed in enumerate(seeds):
        params = problem.init(seed)
        if optimizer_key in KERAS:  # cheap to trace: built fresh per seed, as evaluation does
            model = problem.build_model(params)
            optimizer = getattr(keras.optimizers, KERAS[optimizer_key][1])(
                learning_rate=settings["learning_rate"])
            train_step = backend.make_train_step(problem.loss, model.trainable_variables,
                                                 optimizer)
        else:
            if model is None:
                model = problem.build_model(params)
                optimizer = PIOOptimizer(network=settings["network"],
                                         learning_rate=settings["learning_rate"], seed=0)
                optimizer.build(model.trainable_variables)
                train_step = backend.make_train_step(problem.loss, model.trainable_variables,
                                                     optimizer)
            model.set_weights(params)
            reset_pio(optimizer, settings, model.trainable_variables, seed)
        variables = model.trainable_variables
        batches = problem.batches(seed, 0, steps)
        for step in range(steps):
            started = time.perf_counter()
            train_step(to_tensors(batches, step))
            elapsed = time.perf_counter() - started
            if step == 0:
                timing["first_call_s"].append(elapsed)
            else:
                timing["step_s"] += elapsed
                timing["steps_timed"] += 1
            curves[row, step] = float(test_loss([ops.convert_to_tensor(v) for v in variables]))
    return curves, timing


def summarise(curves):
    finite = np.where(np.isfinite(curves), curves, np.inf)
    minima = finite.min(axis=1)
    minima = np.where(np.isinf(minima), np.nan, minima)
    valid = minima[np.isfinite(minima)]
    mean = float(np.mean(valid)) if len(valid) == len(minima) else float("nan")
    standard_error = float(np.std(valid, ddof=1) / math.sqrt(len(valid))) if (
        len(valid) == len(minima) and len(valid) > 1) else float("nan")
    return {"min_per_seed": [float(m) for m in minima], "mean": mean,
            "standard_error": standard_error,
            "seeds_with_nonfinite_loss": int(np.sum(~np.isfinite(curves).all(axis=1))),
            "seeds_never_finite": int(np.sum(~np.isfinite(minima)))}


def code_version():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    # The PIO code was changing under this benchmark; the hash says which version ran
    # (the package imported, wherever this script runs from).
    package, digest = os.path.dirname(sde.__file__), hashlib.sha256()
    for name in sorted(os.listdir(package)):
        if name.endswith(".py"):
            with open(os.path.join(package, name), "rb") as handle:
                digest.update(handle.read())
    return commit, digest.hexdigest()[:12]


def result_path(problem_key, optimizer_key, label, quick=False):
    return os.path.join(OUT, "quick" if quick else "", problem_key, optimizer_key,
                        f"{label}.json")


def load_result(path, identity):
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        result = json.load(handle)
    return result if all(result.get(k) == v for k, v in identity.items()) else None


def run_all(args):
    commit, pio_hash = code_version()
    for problem_key in args.problems:
        problem = PROBLEMS[problem_key][1]()
        test_loss = make_test_loss(problem)
        for optimizer_key in args.optimizers:
            for label, settings in sweep(problem_key, optimizer_key, args.quick):
                if args.points and label not in args.points:
                    continue
                identity = {"problem": problem_key, "optimizer": optimizer_key,
                            "settings": settings, "seeds": args.seed_list,
                            "steps": args.steps}
                path = result_path(problem_key, optimizer_key, label, args.quick)
                if not args.fresh and load_result(path, identity) is not None:
                    print(f"[{problem_key} {optimizer_key} {label}] reused {path}", flush=True)
                    continue
                started = time.perf_counter()
                curves, timing = run_point(problem, test_loss, optimizer_key, settings,
                                           args.seed_list, args.steps)
                seconds = time.perf_counter() - started
                summary = summarise(curves)
                ms_per_step = 1000 * timing["step_s"] / max(timing["steps_timed"], 1)
                result = {**identity, "label": label, **summary, "seconds": seconds,
                          "ms_per_step": ms_per_step,
                          "first_call_s": timing["first_call_s"],
                          "test_loss": curves.tolist(), "commit": commit,
                          "pio_py_sha256": pio_hash,
                          "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path + ".tmp", "w") as handle:
                    json.dump(result, handle)
                os.replace(path + ".tmp", path)
                print(f"[{problem_key} {optimizer_key} {label}] min test loss "
                      f"{summary['mean']:.4f} ± {summary['standard_error']:.4f} "
                      f"(non-finite seeds {summary['seeds_with_nonfinite_loss']}); "
                      f"{seconds:.1f} s, {ms_per_step:.1f} ms/step", flush=True)


def collect(args):
    """{problem: {optimizer: [results of its sweep points]}} from the JSON files."""
    table = {}
    for problem_key in args.problems:
        for optimizer_key in args.optimizers:
            found = []
            for label, settings in sweep(problem_key, optimizer_key, args.quick):
                identity = {"problem": problem_key, "optimizer": optimizer_key,
                            "settings": settings, "seeds": args.seed_list,
                            "steps": args.steps}
                result = load_result(result_path(problem_key, optimizer_key, label, args.quick),
                                     identity)
                if result is not None:
                    found.append(result)
            table.setdefault(problem_key, {})[optimizer_key] = found
    return table


def best_of(results):
    finite = [r for r in results if math.isfinite(r["mean"])]
    return min(finite, key=lambda r: r["mean"]) if finite else None


def number(value, spread=None):
    text = f"{value:.3f}" if 0.01 <= abs(value) < 1000 else f"{value:.2g}"
    if spread is None:
        return text
    return text + " ± " + (f"{spread:.3f}" if 0.001 <= spread < 1000 else f"{spread:.1g}")


def cell(result):
    return number(result["mean"], result["standard_error"])


def table_rows(args):
    """(row name, optimiser, predicate on a sweep point's settings) per main-table row.

    PIO variants get a row per ``sigma_rescaling``: static shrinks the prior onto its
    centre, 0, which on Carrillo with B = 0 is the optimum, so it must not hide the
    unrescaled result.
    """
    rows = []
    for optimizer_key in args.optimizers:
        name = OPTIMIZERS[optimizer_key][0]
        if optimizer_key in KERAS:
            rows.append((name, optimizer_key, lambda settings: True))
            continue
        for rescaling in ("none", "static"):
            rows.append((name if rescaling == "none" else f"{name}, static σ-rescaling",
                         optimizer_key,
                         lambda settings, rescaling=rescaling:
                         settings["network"]["sigma_rescaling"] == rescaling))
    return rows


def print_tables(args):
    table = collect(args)
    seeds = len(args.seed_list)
    print(f"\nMinimum test loss over {args.steps} steps, mean ± s.e. over {seeds} seeds, "
          f"best sweep point (in brackets)\n")
    header = ["optimiser"] + [PROBLEMS[p][0] for p in args.problems]
    published = "carrillo" in args.problems
    if published:
        header.append("published, Carrillo")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for name, optimizer_key, chosen in table_rows(args):
        row = [name]
        for problem_key in args.problems:
            results = [r for r in table[problem_key][optimizer_key] if chosen(r["settings"])]
            planned = sum(1 for _, settings in sweep(problem_key, optimizer_key, args.quick)
                          if chosen(settings))
            best = best_of(results)
            if best is None:
                row.append("not in the sweep" if not planned else "not run" if not results
                           else "non-finite at every sweep point")
                continue
            note = "" if len(results) == planned else f"; {len(results)} of {planned} points"
            row.append(f"{cell(best)} ({describe(optimizer_key, best['settings'])}{note})")
        if published:
            value = PUBLISHED_CARRILLO.get(name)
            row.append("—" if value is None else f"{value:.3f}")
        print("| " + " | ".join(row) + " |")

    print("\nEvery sweep point: min test loss mean ± s.e.; test loss after the last step "
          "(mean ± s.e.); seeds whose curve had a non-finite value; V / ∇V evaluations "
          "per step; ms per step (after the first); seconds for all seeds\n")
    print("| problem | optimiser | point | min test loss | final test loss | non-finite seeds "
          "| evaluations / step | ms/step | s |")
    print("|" + " --- |" * 9)
    for problem_key in args.problems:
        for optimizer_key in args.optimizers:
            for result in table[problem_key][optimizer_key]:
                value = cell(result) if math.isfinite(result["mean"]) else "non-finite"
                sampler = "" if optimizer_key in KERAS else ", ".join(
                    f"{k} {v}" for k, v in PIO_SAMPLER[problem_key][optimizer_key].items())
                point = describe(optimizer_key, result["settings"]) + (
                    f"; {sampler}" if sampler else "")
                final = np.array(result["test_loss"])[:, -1]
                final_text = number(np.mean(final), np.std(final, ddof=1) / math.sqrt(
                    len(final)) if len(final) > 1 else None)
                print(f"| {problem_key} | {OPTIMIZERS[optimizer_key][0]} | {point} | {value} | "
                      f"{final_text} | {result['seeds_with_nonfinite_loss']} | "
                      f"{evaluations_per_step(optimizer_key, result['settings'])} | "
                      f"{result['ms_per_step']:.1f} | {result['seconds']:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="carrillo,moons,mnist",
                        help="comma-separated subset of " + ",".join(PROBLEMS))
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help="comma-separated subset of " + ",".join(OPTIMIZERS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 seeds, 3 steps, one sweep point per optimiser")
    parser.add_argument("--points", default="",
                        help="comma-separated sweep-point labels to run (default: all), "
                             "e.g. sigma0.01_lr0.01_static,lr0.01")
    parser.add_argument("--fresh", action="store_true", help="recompute finished points")
    parser.add_argument("--table-only", action="store_true",
                        help="print the tables from the JSON files, run nothing")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps = 2, 3
    args.problems = args.problems.split(",")
    args.optimizers = args.optimizers.split(",")
    args.points = [p for p in args.points.split(",") if p]
    for name, known in (("problems", PROBLEMS), ("optimizers", OPTIMIZERS)):
        unknown = [k for k in getattr(args, name) if k not in known]
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(known)}")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    if not args.table_only:
        run_all(args)
    print_tables(args)


if __name__ == "__main__":
    main()

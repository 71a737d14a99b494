"""Held-out tasks: learned optimisers against Adam with a per-task tuned learning rate.

    L2O_DATA=../shared/data python benchmarks/generalisation.py [--tasks mnist_mlp ...]
        [--steps 1000] [--repeats 5] [--pretrained NAME ...]
        [--runs DM=runs/dm_family ...] [--quick] [--force]

None of the tasks below is among the meta-training tasks of the shipped optimisers
(``configs/mlp_pes_digits.yaml``: 8x8 ``digits`` MLPs of 16 to 64 units and a digits
CNN [8, 16]; ``configs/mlp_pes_family.yaml``: those, a 128-unit digits MLP and
28x28 MNIST MLPs 784-32-10 and 784-64-64-10 relu). On each, every learned optimiser
(``--pretrained`` names, ``--runs NAME=DIR`` run directories, each loaded with
``l2o.load_optimizer``) and Adam at each rate of a 7-point log grid runs ``--steps``
steps on ``--repeats`` seeds, all on identical initial weights and batches
(``l2o.evaluation.curves``).

Training loss at a horizon h is the mean over seeds of each run's mean per-batch
loss over steps h-9 .. h (one batch is noisy); validation loss is that of the
whole validation set after h steps. Each is shown as a ratio to the tuned Adam
(the rate of the grid with the lowest mean at that horizon, named) and to
Adam(1e-3), the rate a user runs untuned. A run diverged if its training loss
went non-finite or its mean over the last 10 steps is above that over the first 10.

Results accumulate per task in ``<out>/generalisation/<task>.npz``: a run
computes only the (task, optimiser) pairs missing or changed (other settings,
other meta-weights; ``--force`` recomputes), then renders the table from every
saved task to ``<out>/generalisation.md`` and ``.json`` and the curves to
``--figure``. Optimisers not named in a run keep their saved results; each
optimiser is saved as it finishes, so a run cut short (``timeout``) is completed
by running the same command again.
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import l2o
from l2o import checkpoints, evaluation, problems
from l2o.validation import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 1000
TAIL = 10  # per-batch losses averaged at a horizon
ADAM_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_RATE = 1e-3

# name: (what it is, problem entry); none is a meta-training task of the shipped optimisers.
TASKS = {
    "mnist_mlp": ("MNIST MLP 784-128-128-10 relu, batch 128",
                  {"target": "mlp_classifier",
                   "kwargs": {"layers": [128, 128], "activation": "relu", "dataset": "mnist",
                              "batch_size": 128}}),
    "digits_deep_mlp": ("digits MLP 64-128-128-128-10 relu, batch 64 (deeper and wider)",
                        {"target": "mlp_classifier",
                         "kwargs": {"layers": [128, 128, 128], "activation": "relu",
                                    "dataset": "digits", "batch_size": 64}}),
    "mnist_cnn": ("MNIST 28x28 CNN filters [16, 32] relu, batch 128",
                  {"target": "conv_classifier",
                   "kwargs": {"filters": [16, 32], "activation": "relu", "dataset": "mnist",
                              "batch_size": 128}}),
    "moons_mlp": ("two moons MLP 2-32-1 tanh, batch 100 (a data set not in training)",
                  {"target": "two_moons", "kwargs": {"layers": [32], "activation": "tanh"}}),
    "teacher_student": ("teacher-student regression 16-64-64-1 tanh, noise 0.1, batch 64",
                        {"target": "teacher_student",
                         "kwargs": {"input_dim": 16, "hidden": [64, 64], "teacher_hidden": [32],
                                    "activation": "tanh", "noise": 0.1, "batch_size": 64}}),
}
QUICK = {"steps": 30, "repeats": 1, "early": 10}


def rate_text(rate):
    return f"{rate:.0e}".replace("e-0", "e-")


def adam_label(rate):
    return f"Adam({rate_text(rate)})"


ADAM_LABELS = [adam_label(rate) for rate in ADAM_RATES]
DEFAULT_LABEL = adam_label(DEFAULT_RATE)


def optimizer_factories(pretrained, runs):
    """``{label: (source, run_seed -> optimizer, fingerprint)}``: learned ones, then Adam's grid.

    Each is built once here, so a bad name or run directory stops the benchmark
    before it runs anything.
    """
    learned = [(name, f"{l2o.pretrained.PREFIX}{name}") for name in pretrained] + runs
    factories = {label: (source, lambda run_seed, source=source: l2o.load_optimizer(
        source, run_seed=run_seed)) for label, source in learned}
    for rate in ADAM_RATES:
        factories[adam_label(rate)] = ("keras", evaluation.keras_optimizer_factory(
            {"class_name": "Adam", "config": {"learning_rate": rate}}))
    return {label: (source, make_optimizer, fingerprint(make_optimizer))
            for label, (source, make_optimizer) in factories.items()}


def fingerprint(make_optimizer):
    """Hash of the optimiser's Keras config (class, rates, meta-weights): changed weights rerun."""
    config = keras.optimizers.serialize(make_optimizer(SEED))
    config["config"].pop("name")  # Keras numbers each new instance's name (adam, adam_1, ...)
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def task_path(out, task):
    return os.path.join(out, "generalisation", f"{task}.npz")


def load_task(out, task):
    """``(arrays, info)`` saved for ``task``, or None."""
    path = task_path(out, task)
    return checkpoints.load(path) if os.path.isfile(path) else None


def run_task(task, factories, settings, out, force):
    """Computes what is missing or stale for ``task``; saves after each optimiser."""
    description, spec = TASKS[task]
    problem = problems.build({"args": [], **spec}, f"task {task}")
    saved = load_task(out, task)
    arrays, info = {}, {"task": task, "description": description, "settings": settings,
                        "optimisers": {}}
    if saved is not None and saved[1]["settings"] == settings:
        arrays, info["optimisers"] = dict(saved[0].items()), dict(saved[1]["optimisers"])
    for label, (source, make_optimizer, key) in factories.items():
        if not force and info["optimisers"].get(label, {}).get("fingerprint") == key:
            continue
        started = time.perf_counter()
        result = evaluation.curves(problem, make_optimizer, settings["steps"],
                                   settings["repeats"], settings["seed"],
                                   settings["validation_every"], description=f"{task} {label}")
        print(f"{task}: {label} ({time.perf_counter() - started:.0f} s)", flush=True)
        arrays.update({f"{label}/{name}": value for name, value in result.items()})
        info["optimisers"][label] = {"source": source, "fingerprint": key}
        checkpoints.save(task_path(out, task), arrays, info)


def horizon_train(train_loss, horizon):
    """Each run's mean per-batch training loss over the ``TAIL`` steps ending at ``horizon``."""
    return np.mean(train_loss[:, max(0, horizon - TAIL):horizon], axis=1)


def diverged_runs(train_loss):
    """Runs gone non-finite, or ending above where they started (both ``TAIL``-step means)."""
    ends = horizon_train(train_loss, train_loss.shape[1])
    bad = ~np.all(np.isfinite(train_loss), axis=1) | (ends > horizon_train(train_loss, TAIL))
    return int(np.sum(bad))


def metric_values(arrays, label, horizons):
    """``{"train@h": mean, "validation@h": mean}`` of one optimiser (validation if present)."""
    values = {}
    train = arrays[f"{label}/train_loss"]
    for h in horizons:
        values[f"train@{h}"] = float(np.mean(horizon_train(train, h)))
    if f"{label}/validation_loss" in arrays:
        steps = list(arrays[f"{label}/validation_step"])
        for h in horizons:
            values[f"validation@{h}"] = float(np.mean(
                arrays[f"{label}/validation_loss"][:, steps.index(h)]))
    return values


def ratio(value, reference):
    return value / reference if reference is not None and math.isfinite(reference) else math.nan


def summarise_task(arrays, info):
    """Per optimiser: values, ratios to the tuned Adam and to Adam(1e-3), divergences."""
    settings = info["settings"]
    horizons = sorted({settings["early"], settings["steps"]})
    labels = [label for label in info["optimisers"] if label not in ADAM_LABELS]
    grid = [label for label in ADAM_LABELS if label in info["optimisers"]]
    labels += grid
    values = {label: metric_values(arrays, label, horizons) for label in labels}
    metrics = list(values[labels[0]])
    tuned = {}
    for metric in metrics:
        finite = [label for label in grid if math.isfinite(values[label][metric])]
        tuned[metric] = min(finite, key=lambda label: values[label][metric]) if finite else None
    default = values.get(DEFAULT_LABEL)
    rows = {}
    for label in labels:
        row = {"diverged": diverged_runs(arrays[f"{label}/train_loss"]),
               "runs": int(arrays[f"{label}/train_loss"].shape[0]),
               "source": info["optimisers"][label]["source"]}
        for metric in metrics:
            best = tuned[metric] and values[tuned[metric]][metric]
            row[metric] = {"value": values[label][metric],
                           "vs_tuned": ratio(values[label][metric], best),
                           "vs_default": ratio(values[label][metric],
                                               default and default[metric])}
        rows[label] = row
    return {"description": info["description"], "steps": settings["steps"],
            "repeats": settings["repeats"], "horizons": horizons, "metrics": metrics,
            "tuned_adam": tuned, "optimisers": rows}


def number(value, digits=4):
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def render(summaries):
    """The markdown report: one table per task, then one summary line per learned optimiser."""
    lines = [
        "# Held-out generalisation",
        "",
        ("Training loss at step h: the mean over seeds of each run's mean per-batch loss over "
         f"steps h-{TAIL - 1}..h; validation loss: the whole validation set after h steps. "
         f"`/tuned`: ratio to the Adam of the grid "
         f"({', '.join(rate_text(r) for r in ADAM_RATES)}) with the lowest mean at that horizon "
         f"(named per task); `/{DEFAULT_LABEL}`: ratio to Adam at its default rate. Diverged: "
         f"runs whose training loss went non-finite or whose mean over the last {TAIL} steps "
         f"is above that over the first {TAIL}. Produced by "
         "`python benchmarks/generalisation.py`."),
        ""]
    for task, summary in summaries.items():
        metrics = summary["metrics"]
        tuned = ", ".join(f"{metric} {summary['tuned_adam'][metric]}" for metric in metrics)
        lines += [f"## {task}: {summary['description']}", "",
                  f"{summary['steps']} steps x {summary['repeats']} seeds; tuned Adam: {tuned}.",
                  ""]
        header = ["optimiser"] + [f"{column}" for metric in metrics
                                  for column in (metric, "/tuned", f"/{DEFAULT_LABEL}")]
        lines += ["| " + " | ".join(header + ["diverged"]) + " |",
                  "|" + " --- |" * (len(header) + 1)]
        for label, row in summary["optimisers"].items():
            cells = [label] + [text for metric in metrics for text in (
                number(row[metric]["value"]), number(row[metric]["vs_tuned"], 3),
                number(row[metric]["vs_default"], 3))]
            lines.append("| " + " | ".join(cells + [f"{row['diverged']}/{row['runs']}"]) + " |")
        lines.append("")
    lines += ["## Summary (last step; at or below means a ratio <= 1)", ""]
    lines += [f"- {line}" for line in summary_lines(summaries)]
    return "\n".join(lines) + "\n"


def summary_lines(summaries):
    learned = [label for summary in summaries.values() for label in summary["optimisers"]
               if label not in ADAM_LABELS]
    lines = []
    for label in dict.fromkeys(learned):
        tasks = {task: summary for task, summary in summaries.items()
                 if label in summary["optimisers"]}
        parts = []
        for kind in ("train", "validation"):
            for reference, name in (("vs_default", DEFAULT_LABEL), ("vs_tuned", "tuned Adam")):
                scored = {task: s["optimisers"][label][f"{kind}@{s['steps']}"][reference]
                          for task, s in tasks.items() if f"{kind}@{s['steps']}" in s["metrics"]}
                if not scored:
                    continue
                behind = [task for task, value in scored.items() if not value <= 1.0]
                parts.append(f"{kind} loss at or below {name} on "
                             f"{len(scored) - len(behind)}/{len(scored)} tasks"
                             + (f" (not on {', '.join(behind)})" if behind else ""))
        diverged = sum(s["optimisers"][label]["diverged"] for s in tasks.values())
        runs = sum(s["optimisers"][label]["runs"] for s in tasks.values())
        lines.append(f"{label}: " + "; ".join(parts) + f"; diverged runs {diverged}/{runs}.")
    return lines


def smooth(values):
    """Running mean over the last ``TAIL`` steps (as the table's horizons), along axis 1."""
    cumulative = np.cumsum(np.pad(values, ((0, 0), (1, 0))), axis=1)
    steps = np.arange(1, values.shape[1] + 1)
    return (cumulative[:, steps] - cumulative[:, np.maximum(0, steps - TAIL)]) / np.minimum(
        steps, TAIL)


def plot(saved, summaries, path):
    """One panel per task: training-loss curves, mean with a min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(summaries))
    rows = math.ceil(len(summaries) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows),
                                squeeze=False)
    for axis, (task, summary) in zip(axes.flat, summaries.items()):
        arrays = saved[task][0]
        tuned = summary["tuned_adam"][f"train@{summary['steps']}"]
        learned = [label for label in summary["optimisers"] if label not in ADAM_LABELS]
        shown = [(label, f"C{3 + k}", "-") for k, label in enumerate(learned)]
        shown += [(tuned, "C0", "-"), (DEFAULT_LABEL, "C2", "--")]
        for label, colour, style in {entry[0]: entry for entry in shown}.values():
            if label is None or label not in summary["optimisers"]:
                continue
            curves = smooth(arrays[f"{label}/train_loss"])
            steps = np.arange(1, curves.shape[1] + 1)
            name = label + (" (tuned)" if label == tuned else "")
            axis.plot(steps, np.mean(curves, axis=0), color=colour, linestyle=style,
                      linewidth=2.0 if label in learned else 1.4, label=name)
            axis.fill_between(steps, np.min(curves, axis=0), np.max(curves, axis=0),
                              color=colour, alpha=0.15, linewidth=0)
        axis.set_yscale("log")
        axis.set_title(task, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(summaries):]:
        axis.set_visible(False)
    figure.suptitle(f"held-out tasks: training loss ({TAIL}-step running mean; line = mean, "
                    f"band = min..max over seeds)")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(out, figure):
    """Renders table, JSON and plot from every task saved under ``out``; returns the markdown."""
    saved = {task: load_task(out, task) for task in TASKS}
    saved = {task: entry for task, entry in saved.items() if entry is not None}
    summaries = {task: summarise_task(*entry) for task, entry in saved.items()}
    markdown = render(summaries)
    checkpoints.write_text(os.path.join(out, "generalisation.md"), markdown)
    checkpoints.write_text(os.path.join(out, "generalisation.json"), checkpoints.json_dumps_finite(
        {"tasks": summaries, "summary": summary_lines(summaries)}, indent=2))
    if summaries:
        plot(saved, summaries, figure)
    return markdown


def parse_runs(entries, parser):
    runs = []
    for entry in entries:
        name, separator, directory = entry.partition("=")
        if not separator or not name or not directory:
            parser.error(f"--runs {entry}: expected NAME=DIR")
        runs.append((name, directory))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--steps", type=int, help="steps per run (default 1000; --quick 30)")
    parser.add_argument("--repeats", type=int, help="seeds per optimiser (default 5; --quick 1)")
    parser.add_argument("--early", type=int,
                        help="the earlier horizon of the table (default 100; --quick 10)")
    parser.add_argument("--pretrained", nargs="*", default=l2o.pretrained.names(),
                        metavar="NAME", help="shipped optimisers (l2o.pretrained.names())")
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=DIR",
                        help="learned optimisers from run directories")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 30 steps x 1 seed, results under <out>/quick")
    parser.add_argument("--force", action="store_true", help="recompute saved results")
    parser.add_argument("--out", help="results folder (default benchmarks/out; --quick: "
                                      "benchmarks/out/quick)")
    parser.add_argument("--figure", help="plot path (default benchmarks/figures/"
                                         "generalisation.png; --quick: in the results folder)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"steps": 1000, "repeats": 5, "early": 100}
    steps, repeats, early = (getattr(args, key) or defaults[key]
                             for key in ("steps", "repeats", "early"))
    if not TAIL <= early <= steps:
        parser.error(f"--early {early}: must lie between {TAIL} and --steps {steps}")
    out = args.out or os.path.join(HERE, "out", *(["quick"] if args.quick else []))
    figure = args.figure or (os.path.join(out, "generalisation.png") if args.quick else
                             os.path.join(HERE, "figures", "generalisation.png"))
    # Validation steps must include both horizons (the last step always is one).
    settings = {"steps": steps, "repeats": repeats, "early": early, "seed": SEED,
                "validation_every": math.gcd(early, 50)}
    try:
        factories = optimizer_factories(args.pretrained, parse_runs(args.runs, parser))
        for task in args.tasks:
            run_task(task, factories, {**settings, "task": copy.deepcopy(TASKS[task][1])}, out,
                     args.force)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = report(out, figure)
    print(markdown)
    print(f"wrote {os.path.join(out, 'generalisation.md')}, generalisation.json and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

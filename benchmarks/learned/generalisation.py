"""Held-out tasks: validation loss of learned optimisers against Adam (tuned) and Keras's built-ins.

    L2O_DATA=../shared/data python -m benchmarks.learned.generalisation [--tasks mnist_mlp ...]
        [--steps 3000] [--repeats 3] [--checkpoints 100 300 ...] [--pretrained NAME ...]
        [--runs DM=runs/dm_family ...] [--keras LABEL=JSON ...] [--quick] [--force]
        [--out DIR] [--figure PATH]

What a user judges an optimiser by is the loss on data it did not train on, so
the headline here is **validation loss**. None of the tasks below is among the
meta-training tasks of the shipped optimisers (``configs/mlp_pes_digits.yaml``:
8x8 ``digits`` MLPs 64-32-10 relu, 64-64-32-10 tanh, 64-16-10 sigmoid,
64-32-32-10 gelu and a digits CNN [8, 16]; ``configs/mlp_pes_family.yaml``:
those, a 64-128-10 digits MLP and 28x28 MNIST MLPs 784-32-10 and 784-64-64-10
relu); ``digits_mlp_64_64`` (64-64-64-10 relu, batch 32: what a new user tries
with ``model.fit``'s defaults) is the nearest to them.

Optimisers. On each task runs every learned optimiser (``--pretrained`` names, by default
the recommended one; ``--runs NAME=DIR`` run directories; each loaded with
``l2o.load_optimizer``), any other Keras optimiser (``--keras LABEL=JSON``, a
``{"class_name": ..., "config": ...}`` as ``keras.optimizers.get`` takes it, a
learning-rate schedule included, as ``keras.optimizers.serialize`` writes it, its
``"module"`` too; scored as the learned ones are),
Adam at each rate of a 7-point log grid (1e-4 .. 1e-1), and the Keras built-ins
a user would run instead, at their Keras defaults: Adam(1e-3) (the grid's 1e-3
point, run once and labelled the default), ``AdamW()``,
``ScheduleFreeAdamW()``, ``Muon()`` and ``Lion()``. Each runs ``--steps`` steps
on ``--repeats`` seeds, all on identical initial weights and batches
(``l2o.evaluation.curves``, which drives ``optimizer.apply`` on the problem's
``keras.Model`` variables as ``model.fit`` does). Muon picks its update by the
variables' shapes and paths as under ``model.fit``: 2-D kernels (the output
layer's too, as its default ``exclude_layers`` is empty) get Muon, biases and
convolution kernels its internal AdamW. ``ScheduleFreeAdamW`` keeps the
interpolated point y in the model's variables and the averaged point x nowhere
in Keras 3.15: it has no train/eval swap, and ``finalize_variable_values`` (which
``model.fit`` calls at the end) only copies an EMA, which is off by default.
So ``model.fit``'s validation and ``model.evaluate`` see y, and so does this
benchmark: its validation loss is that of the variables as the optimiser left
them, the number a Keras user gets (the Schedule-Free paper evaluates at x,
which is likely lower).

Checkpoints. Validation loss (and accuracy, on the classifiers) of the whole
validation set is measured after steps 0 and each checkpoint only: the members
of (100, 300, 1000, 3000) up to ``--steps``, and ``--steps`` itself
(``--checkpoints`` overrides; ``--quick``: 10 and 30). ``teacher_student`` has
no validation set (its teacher is drawn per seed, so one fixed set cannot serve
every run), but every batch is fresh data whose loss is taken before the step
that uses it: its headline is that held-out estimate, the training loss, each
run's mean per-batch loss over the ``TAIL`` steps ending at the checkpoint (its
table says so). Training loss, measured the same way, is tabulated for every
task.

Scores. At each checkpoint of each task the tuned Adam is the grid's rate with
the lowest mean validation loss there (named per checkpoint); every optimiser's
mean validation loss is shown with its ratio to it. A run diverged if its
training loss went non-finite, or its headline loss at the last step is
non-finite or above that at the start (validation at step 0; training: the mean
of the first ``TAIL`` steps). One summary line per learned optimiser and
built-in gives: the geometric mean, over tasks x checkpoints, of its ratio to
the tuned Adam (over the cells where both are finite; the others are counted);
wins/losses against each built-in at its default (task-checkpoint cells where
its mean validation loss is strictly below / above the built-in's; a
non-finite loss counts as above any finite one); and diverged runs. A learned
optimiser also gets a floor verdict: it **holds** if at every checkpoint of
every task its validation loss is at most Adam(1e-3)'s and it shows no late
jump. A **late jump** at checkpoint b (after checkpoint a, both past step 0) is
a rise of its validation loss r = v(b) / v(a) above ``JUMP`` (1.5) times
max(1, r_default), r_default being Adam(1e-3)'s own v(b) / v(a): a rise by more
than 1.5x beyond whatever rise Adam(1e-3) shows there (a loss going non-finite
is one).

Results accumulate per task in ``<out>/generalisation/<task>.npz``: a run
computes only the (task, optimiser) pairs missing or changed (other settings,
other meta-weights or Keras configs; ``--force`` recomputes), then renders the
tables from every saved task to ``<out>/generalisation.md`` and ``.json`` and
the validation curves to ``--figure``. Optimisers not named in a run keep their
saved results; each optimiser is saved as it finishes, so a run cut short
(``timeout``) is completed by running the same command again.
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time

import keras
import numpy as np

import l2o
from benchmarks import common
from l2o import checkpoints, evaluation, problems
from l2o.validation import ConfigError, check_keras_optimizer

SEED = 1000
TAIL = 10  # per-batch losses averaged for a training loss at a checkpoint
JUMP = 1.5  # a late jump: a rise between checkpoints by more than this beyond Adam(1e-3)'s
CHECKPOINTS = (100, 300, 1000, 3000)
ADAM_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_RATE = 1e-3
# Keras built-ins at their defaults, besides Adam(1e-3): label -> class name.
BUILTINS = ("AdamW", "ScheduleFreeAdamW", "Muon", "Lion")

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
    "digits_mlp_64_64": ("digits MLP 64-64-64-10 relu, batch 32 (model.fit's default batch)",
                         {"target": "mlp_classifier",
                          "kwargs": {"layers": [64, 64], "activation": "relu",
                                     "dataset": "digits", "batch_size": 32}}),
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
DEFAULTS = {"steps": 3000, "repeats": 3, "checkpoints": CHECKPOINTS}
QUICK = {"steps": 30, "repeats": 1, "checkpoints": (10, 30)}


def rate_text(rate):
    return f"{rate:.0e}".replace("e-0", "e-")


def adam_label(rate):
    return f"Adam({rate_text(rate)})"


ADAM_LABELS = [adam_label(rate) for rate in ADAM_RATES]
DEFAULT_LABEL = adam_label(DEFAULT_RATE)
# The built-ins at their Keras defaults, Adam(1e-3) first.
REFERENCES = [DEFAULT_LABEL, *BUILTINS]


def kind_of(label):
    """``"builtin"`` (a Keras default), ``"adam"`` (another rate of the grid) or ``"learned"``."""
    if label in REFERENCES:
        return "builtin"
    return "adam" if label in ADAM_LABELS else "learned"


def optimizer_factories(pretrained, runs, others=()):
    """``{label: (source, run_seed -> optimizer, fingerprint)}``: learned, ``others``
    (``(label, Keras spec)`` pairs), built-ins, Adam's grid.

    Each is built once here, so a bad name or run directory stops the benchmark
    before it runs anything.
    """
    learned = [(name, f"{l2o.pretrained.PREFIX}{name}") for name in pretrained] + runs
    factories = {label: (source, lambda run_seed, source=source: l2o.load_optimizer(
        source, run_seed=run_seed)) for label, source in learned}
    for label, spec in others:
        factories[label] = ("keras", evaluation.keras_optimizer_factory(spec))
    for name in BUILTINS:
        factories[name] = ("keras", evaluation.keras_optimizer_factory(
            {"class_name": name, "config": {}}))
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
                                   validation_steps=[0, *settings["checkpoints"]],
                                   description=f"{task} {label}")
        print(f"{task}: {label} ({time.perf_counter() - started:.0f} s)", flush=True)
        arrays.update({f"{label}/{name}": value for name, value in result.items()})
        info["optimisers"][label] = {"source": source, "fingerprint": key}
        checkpoints.save(task_path(out, task), arrays, info)


def horizon_train(train_loss, horizon):
    """Each run's mean per-batch training loss over the ``TAIL`` steps ending at ``horizon``."""
    return np.mean(train_loss[:, max(0, horizon - TAIL):horizon], axis=1)


def has_validation(arrays, label):
    return f"{label}/validation_loss" in arrays


def validation_runs(arrays, label, steps):
    """``[runs, len(steps)]``: each run's validation loss after each of ``steps``."""
    measured = [int(step) for step in arrays[f"{label}/validation_step"]]
    return arrays[f"{label}/validation_loss"][:, [measured.index(step) for step in steps]]


def headline_runs(arrays, label, steps):
    """``[runs, len(steps)]`` of the headline loss: validation where the task has it, else the
    ``TAIL``-step training loss (fresh data, taken before each step uses it)."""
    if has_validation(arrays, label):
        return validation_runs(arrays, label, steps)
    train = arrays[f"{label}/train_loss"]
    return np.stack([horizon_train(train, step) for step in steps], axis=1)


def diverged_runs(arrays, label):
    """Runs whose training loss went non-finite, or whose headline loss at the last step is
    non-finite or above that at the start (validation at step 0; else the first ``TAIL``
    steps' training loss)."""
    train = arrays[f"{label}/train_loss"]
    steps = train.shape[1]
    if has_validation(arrays, label):
        start, end = validation_runs(arrays, label, [0, steps]).T
    else:
        start, end = horizon_train(train, min(TAIL, steps)), horizon_train(train, steps)
    bad = ~np.all(np.isfinite(train), axis=1) | ~np.isfinite(end) | (end > start)
    return int(np.sum(bad))


def finite(value):
    return value is not None and math.isfinite(value)


def ratio(value, reference):
    return value / reference if finite(value) and finite(reference) else math.nan


def ordered_labels(labels):
    """Learned optimisers, then the built-ins at their defaults, then the rest of Adam's grid."""
    labels = list(labels)
    return ([label for label in labels if kind_of(label) == "learned"]
            + [label for label in REFERENCES if label in labels]
            + [label for label in ADAM_LABELS if label in labels and label != DEFAULT_LABEL])


def summarise_task(arrays, info):
    """Per optimiser: headline loss and its ratio to the tuned Adam at each checkpoint, the
    training loss (and validation accuracy) there, divergences; the tuned Adam per checkpoint."""
    settings = info["settings"]
    points = [int(step) for step in settings["checkpoints"]]
    labels = ordered_labels(info["optimisers"])
    validation = all(has_validation(arrays, label) for label in labels)
    values = {label: np.mean(headline_runs(arrays, label, points), axis=0).tolist()
              for label in labels}
    grid = [label for label in ADAM_LABELS if label in labels]
    tuned = {}
    for column, step in enumerate(points):
        candidates = [label for label in grid if finite(values[label][column])]
        tuned[str(step)] = (min(candidates, key=lambda label: values[label][column])
                            if candidates else None)
    rows = {}
    for label in labels:
        train = arrays[f"{label}/train_loss"]
        row = {"kind": kind_of(label), "source": info["optimisers"][label]["source"],
               "diverged": diverged_runs(arrays, label), "runs": int(train.shape[0]),
               "loss": {}, "vs_tuned": {}, "train": {}}
        for column, step in enumerate(points):
            best = tuned[str(step)]
            row["loss"][str(step)] = values[label][column]
            row["vs_tuned"][str(step)] = ratio(values[label][column],
                                               best and values[best][column])
            row["train"][str(step)] = float(np.mean(horizon_train(train, step)))
        if f"{label}/validation_accuracy" in arrays:
            measured = [int(step) for step in arrays[f"{label}/validation_step"]]
            row["accuracy"] = {str(step): float(np.mean(arrays[f"{label}/validation_accuracy"][
                :, measured.index(step)])) for step in points}
        rows[label] = row
    return {"description": info["description"], "steps": settings["steps"],
            "repeats": settings["repeats"], "checkpoints": points,
            "headline": "validation" if validation else "training (fresh data)",
            "tuned_adam": tuned, "optimisers": rows}


def comparable(value):
    """A loss for ranking: a non-finite one is worse than any finite one."""
    return value if finite(value) else math.inf


def late_jumps(losses, default_losses, steps):
    """Checkpoints (after the first) where ``losses`` rises by more than ``JUMP`` times
    ``max(1, r_default)`` since the previous one, r_default being the default's rise there."""
    jumps = []
    for index in range(1, len(steps)):
        before, after = losses[index - 1], losses[index]
        if not finite(before):
            continue  # already non-finite (or above the floor): reported there
        rise = after / before if finite(after) else math.inf
        default_before, default_after = default_losses[index - 1], default_losses[index]
        default_rise = (default_after / default_before
                        if finite(default_before) and finite(default_after) else math.inf)
        if rise > JUMP * max(1.0, default_rise):
            jumps.append(steps[index])
    return jumps


def optimiser_summary(summaries, label):
    """One optimiser's scores over every task and checkpoint it ran (see the module docstring)."""
    tasks = {task: s for task, s in summaries.items() if label in s["optimisers"]}
    ratios, nonfinite, cells = [], 0, 0
    versus = {reference: [0, 0] for reference in REFERENCES if reference != label
              and any(reference in s["optimisers"] for s in tasks.values())}
    below_floor, jumps = [], []
    for task, s in tasks.items():
        row = s["optimisers"][label]
        for step in s["checkpoints"]:
            key = str(step)
            cells += 1
            if finite(row["vs_tuned"][key]):
                ratios.append(row["vs_tuned"][key])
            else:
                nonfinite += 1
            mine = comparable(row["loss"][key])
            for reference, counts in versus.items():
                if reference not in s["optimisers"]:
                    continue
                theirs = comparable(s["optimisers"][reference]["loss"][key])
                counts[0] += mine < theirs
                counts[1] += mine > theirs
        if kind_of(label) == "learned" and DEFAULT_LABEL in s["optimisers"]:
            default = s["optimisers"][DEFAULT_LABEL]["loss"]
            steps = s["checkpoints"]
            below_floor += [f"{task}@{step}" for step in steps
                            if not comparable(row["loss"][str(step)])
                            <= comparable(default[str(step)])]
            jumps += [f"{task}@{step}" for step in late_jumps(
                [row["loss"][str(step)] for step in steps],
                [default[str(step)] for step in steps], steps)]
    summary = {
        "kind": kind_of(label), "tasks": list(tasks), "cells": cells,
        "geomean_vs_tuned": (float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan),
        "nonfinite_cells": nonfinite,
        "versus": {reference: {"below": counts[0], "above": counts[1]}
                   for reference, counts in versus.items()},
        "diverged": sum(s["optimisers"][label]["diverged"] for s in tasks.values()),
        "runs": sum(s["optimisers"][label]["runs"] for s in tasks.values())}
    if kind_of(label) == "learned":
        summary["floor"] = {"holds": not below_floor and not jumps,
                            "above_default": below_floor, "late_jumps": jumps}
    return summary


def summaries_by_optimiser(summaries):
    """``{label: optimiser_summary}`` for each learned optimiser and built-in that ran."""
    labels = ordered_labels(dict.fromkeys(
        label for s in summaries.values() for label in s["optimisers"]))
    return {label: optimiser_summary(summaries, label) for label in labels
            if kind_of(label) != "adam"}


def summary_line(label, summary):
    parts = [f"geometric mean of validation loss / tuned Adam "
             f"{number(summary['geomean_vs_tuned'], 3)} over "
             f"{summary['cells'] - summary['nonfinite_cells']}/{summary['cells']} "
             "task-checkpoints" + (f" ({summary['nonfinite_cells']} non-finite)"
                                   if summary["nonfinite_cells"] else "")]
    if summary["versus"]:
        parts.append("wins/losses " + ", ".join(
            f"vs {reference} {counts['below']}/{counts['above']}"
            for reference, counts in summary["versus"].items()))
    parts.append(f"diverged runs {summary['diverged']}/{summary['runs']}")
    if "floor" in summary:
        floor = summary["floor"]
        if floor["holds"]:
            parts.append(f"floor holds (at or below {DEFAULT_LABEL} everywhere, no late jump)")
        else:
            reasons = []
            if floor["above_default"]:
                reasons.append(f"above {DEFAULT_LABEL} at {', '.join(floor['above_default'])}")
            if floor["late_jumps"]:
                reasons.append(f"late jumps at {', '.join(floor['late_jumps'])}")
            parts.append("floor fails (" + "; ".join(reasons) + ")")
    return f"{label}: " + "; ".join(parts) + "."


def number(value, digits=4):
    return f"{value:.{digits}g}" if finite(value) else str(value)


def display(label):
    return f"{label} (default)" if label == DEFAULT_LABEL else label


def render(summaries, by_optimiser):
    """The markdown report: per task its tables, then one summary line per optimiser."""
    lines = [
        "# Held-out generalisation: validation loss",
        "",
        ("Validation loss of the whole validation set after h steps, mean over seeds "
         "(`teacher_student`, which has no validation set: training loss on fresh data, each "
         f"run's mean per-batch loss over steps h-{TAIL - 1}..h). `/tuned`: ratio to the Adam "
         f"of the grid ({', '.join(rate_text(r) for r in ADAM_RATES)}) with the lowest mean "
         f"at that checkpoint (named per task). Built-ins at their Keras defaults: "
         f"{', '.join(display(label) for label in REFERENCES)}. Diverged: runs whose training "
         "loss went non-finite or whose loss at the last step is non-finite or above that at "
         "the start. Produced by `python -m benchmarks.learned.generalisation`."),
        ""]
    for task, summary in summaries.items():
        points = summary["checkpoints"]
        tuned = ", ".join(f"@{step} {summary['tuned_adam'][str(step)]}" for step in points)
        metric = "val" if summary["headline"] == "validation" else "train"
        lines += [f"## {task}: {summary['description']}", "",
                  (f"{summary['steps']} steps x {summary['repeats']} seeds; headline: "
                   f"{summary['headline']} loss; tuned Adam: {tuned}."), ""]
        header = ["optimiser"] + [column for step in points
                                  for column in (f"{metric}@{step}", "/tuned")] + ["diverged"]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for label, row in summary["optimisers"].items():
            cells = [display(label)] + [text for step in points for text in (
                number(row["loss"][str(step)]), number(row["vs_tuned"][str(step)], 3))]
            lines.append("| " + " | ".join(cells + [f"{row['diverged']}/{row['runs']}"]) + " |")
        lines.append("")
        accuracy = all("accuracy" in row for row in summary["optimisers"].values())
        if metric == "val":
            header = ["optimiser"] + [f"train@{step}" for step in points] + (
                [f"acc@{step}" for step in points] if accuracy else [])
            lines += [f"Training loss (mean over steps h-{TAIL - 1}..h)"
                      + (" and validation accuracy" if accuracy else "") + ":", "",
                      "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            for label, row in summary["optimisers"].items():
                cells = [display(label)] + [number(row["train"][str(step)]) for step in points]
                if accuracy:
                    cells += [number(row["accuracy"][str(step)], 3) for step in points]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Summary", "",
              ("Over tasks x checkpoints: the geometric mean of the ratio to the tuned Adam; "
               "wins/losses: cells strictly below/above each built-in at its default; floor "
               f"(learned): at or below {DEFAULT_LABEL} at every checkpoint of every task and "
               f"no late jump (a rise between consecutive checkpoints by more than {JUMP}x "
               f"max(1, {DEFAULT_LABEL}'s rise there))."), ""]
    lines += [f"- {summary_line(label, summary)}" for label, summary in by_optimiser.items()]
    return "\n".join(lines) + "\n"


REFERENCE_COLOURS = dict(zip(REFERENCES, ("C2", "C0", "C1", "C4", "C5")))
LEARNED_COLOURS = ("C3", "C6", "C8", "C9", "C7")


def plot(saved, summaries, path, named):
    """One panel per task: headline loss at each checkpoint, mean with a min-max band, of the
    learned optimisers in ``named`` (this command's; every saved one would crowd the panels)
    beside the built-ins and the tuned Adam."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(summaries))
    rows = math.ceil(len(summaries) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows),
                                squeeze=False)
    for axis, (task, summary) in zip(axes.flat, summaries.items()):
        arrays, points = saved[task][0], summary["checkpoints"]
        labels = list(summary["optimisers"])
        learned = [label for label in labels if kind_of(label) == "learned" and label in named]
        shown = [(label, LEARNED_COLOURS[rank % len(LEARNED_COLOURS)])
                 for rank, label in enumerate(learned)]
        shown += [(label, REFERENCE_COLOURS[label]) for label in REFERENCES if label in labels]
        for label, colour in shown:
            values = headline_runs(arrays, label, points)
            is_learned = label in learned
            axis.plot(points, np.mean(values, axis=0), color=colour, marker="o", markersize=3,
                      linestyle="-" if is_learned else "--",
                      linewidth=2.0 if is_learned else 1.2, label=display(label))
            if is_learned or label == DEFAULT_LABEL:
                axis.fill_between(points, np.min(values, axis=0), np.max(values, axis=0),
                                  color=colour, alpha=0.15, linewidth=0)
        best = [summary["optimisers"][summary["tuned_adam"][str(step)]]["loss"][str(step)]
                if summary["tuned_adam"][str(step)] else math.nan for step in points]
        axis.plot(points, best, color="black", linestyle=":", marker="x", markersize=4,
                  label="tuned Adam (per checkpoint)")
        axis.set_xscale("log")
        if any(finite(v) and v > 0 for row in summary["optimisers"].values()
               for v in row["loss"].values()):
            axis.set_yscale("log")
        axis.set_title(f"{task} ({summary['headline']})", fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(summaries):]:
        axis.set_visible(False)
    figure.suptitle("held-out tasks: validation loss at the checkpoints\n(line = mean; band = "
                    "min..max over seeds)", fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(out, figure, named):
    """Renders tables and JSON from every task saved under ``out``, and the plot of the
    optimisers ``named`` (with the built-ins); returns the markdown."""
    saved = {task: load_task(out, task) for task in TASKS}
    saved = {task: entry for task, entry in saved.items() if entry is not None}
    summaries = {task: summarise_task(*entry) for task, entry in saved.items()}
    by_optimiser = summaries_by_optimiser(summaries)
    markdown = render(summaries, by_optimiser)
    checkpoints.write_text(os.path.join(out, "generalisation.md"), markdown)
    checkpoints.write_text(os.path.join(out, "generalisation.json"), checkpoints.json_dumps_finite(
        {"tasks": summaries, "summary": by_optimiser,
         "summary_lines": [summary_line(label, s) for label, s in by_optimiser.items()]},
        indent=2))
    if summaries:
        plot(saved, summaries, figure, set(named))
    return markdown


def labelled(option, entries, parser, value_name):
    """``(label, value)`` of each ``LABEL=VALUE`` entry of ``option``; a label may not name a
    baseline."""
    pairs = []
    for entry in entries:
        label, separator, value = entry.partition("=")
        if not separator or not label or not value:
            parser.error(f"{option} {entry}: expected NAME={value_name}")
        if label in ADAM_LABELS or label in BUILTINS:
            parser.error(f"{option} {entry}: {label} names a baseline")
        pairs.append((label, value))
    return pairs


def parse_keras(entries, parser):
    """``(label, spec)`` of each ``--keras LABEL=JSON``; a spec Keras cannot build is a
    ``ConfigError`` naming it."""
    others = []
    for label, text in labelled("--keras", entries, parser, "JSON"):
        try:
            spec = json.loads(text)
        except ValueError:
            parser.error(f"--keras {label}: not JSON: {text}")
        check_keras_optimizer(f"--keras {label}", spec)
        others.append((label, spec))
    return others


def checkpoint_steps(steps, requested):
    """The members of ``requested`` up to ``steps``, and ``steps`` itself, ascending."""
    return sorted({step for step in requested if step <= steps} | {steps})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--steps", type=int, help="steps per run (default 3000; --quick 30)")
    parser.add_argument("--repeats", type=int, help="seeds per optimiser (default 3; --quick 1)")
    parser.add_argument("--checkpoints", type=int, nargs="+", metavar="H",
                        help="steps at which validation is measured, besides --steps "
                             "(default 100 300 1000 3000, those up to --steps; --quick 10 30)")
    parser.add_argument("--pretrained", nargs="*", default=[l2o.pretrained.RECOMMENDED],
                        metavar="NAME", help="shipped optimisers (default: the recommended "
                                             "one; any of l2o.pretrained.names())")
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=DIR",
                        help="learned optimisers from run directories")
    parser.add_argument("--keras", nargs="*", default=[], metavar="LABEL=JSON",
                        help="other Keras optimisers: {\"class_name\": ..., \"config\": ...}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 30 steps x 1 seed, results under <out>/quick")
    parser.add_argument("--force", action="store_true", help="recompute saved results")
    parser.add_argument("--out", help="results folder (default benchmarks/out; --quick: "
                                      "benchmarks/out/quick)")
    parser.add_argument("--figure", help="plot path (default benchmarks/figures/"
                                         "generalisation.png; --quick: in the results folder)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else DEFAULTS
    steps = args.steps or defaults["steps"]
    repeats = args.repeats or defaults["repeats"]
    if steps < 1 or repeats < 1:
        parser.error("--steps and --repeats must be positive")
    if args.checkpoints and not all(1 <= step <= steps for step in args.checkpoints):
        parser.error(f"--checkpoints {args.checkpoints}: each must lie between 1 and "
                     f"--steps {steps}")
    points = checkpoint_steps(steps, args.checkpoints or defaults["checkpoints"])
    out = args.out or common.out_path(*(["quick"] if args.quick else []))
    figure = args.figure or (os.path.join(out, "generalisation.png") if args.quick else
                             common.figure_path("generalisation.png"))
    settings = {"steps": steps, "repeats": repeats, "checkpoints": points, "seed": SEED}
    try:
        factories = optimizer_factories(args.pretrained, labelled("--runs", args.runs, parser, "DIR"),
                                        parse_keras(args.keras, parser))
        for task in args.tasks:
            run_task(task, factories, {**settings, "task": copy.deepcopy(TASKS[task][1])}, out,
                     args.force)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = report(out, figure, factories)
    print(markdown)
    print(f"wrote {os.path.join(out, 'generalisation.md')}, generalisation.json and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

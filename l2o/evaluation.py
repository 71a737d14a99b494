"""Evaluation of any Keras optimiser, learned or not, on a run's problems.

Every optimiser sees the same problems, initial weights and batches (both are
functions of the repeat's seed), and is driven through the Keras optimiser API
(``optimizer.apply``), exactly as ``model.fit`` drives it. Results go to
``<run>/evaluation/<label>.npz`` (per-step curves) and ``<label>.json``
(summary); ``plot`` draws every label found there, one figure per problem.
"""

import copy
import glob
import json
import os

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from l2o import backend, checkpoints, problems


def evaluation_problems(config):
    specs = config["evaluation"]["problems"] or config["problems"]
    field = "evaluation/problems" if config["evaluation"]["problems"] else "problems"
    # A task family is evaluated on each of its members (its ``member`` k: on that one).
    return [member for index, spec in enumerate(specs)
            for member in problems.build(spec, f"{field}/{index}").members()]


def curves(problem, make_optimizer, steps, repeats, seed, validation_every=None, description="",
           validation_steps=None):
    """Per-step training loss, and validation loss/accuracy every ``validation_every`` steps.

    ``make_optimizer(run_seed)`` builds each run's optimiser: a stochastic one
    gets its own noise per run, as each run starts from its own weights.
    ``validation_steps`` (steps between 0 and ``steps``), where given, replaces
    ``validation_every``: validation is measured after exactly those steps. Either
    way it is measured after the last step too.

    Returns ``{"train_loss": [repeats, steps], "validation_step": [k],
    "validation_loss": [repeats, k], "validation_accuracy": [repeats, k]}``.
    """
    validation = problem.validation_batch()
    if validation_steps is not None:
        if any(not 0 <= step <= steps for step in validation_steps):
            raise ValueError(f"validation_steps {list(validation_steps)}: each must lie "
                             f"between 0 and steps ({steps})")
        checkpoints = sorted({int(step) for step in validation_steps} | {steps})
    elif validation_every is None:
        raise ValueError("curves: give validation_every or validation_steps")
    else:
        checkpoints = sorted(set(range(0, steps, validation_every)) | {steps})
    result = {"train_loss": np.zeros((repeats, steps))}
    if validation is not None:
        result["validation_step"] = np.array(checkpoints)
        result["validation_loss"] = np.zeros((repeats, len(checkpoints)))
        result["validation_accuracy"] = np.zeros((repeats, len(checkpoints)))
        validation = tuple(ops.convert_to_tensor(v) for v in validation)
    for repeat in tqdm(range(repeats), desc=description, leave=False, mininterval=1.0,
                       disable=None):
        run_seed = seed + repeat
        model = problem.build_model(problem.init(run_seed))
        variables = model.trainable_variables
        optimizer = make_optimizer(run_seed)
        train_step = backend.make_train_step(problem.loss, variables, optimizer)
        batches = problem.batches(run_seed, 0, steps)
        for step in range(steps + 1):
            if validation is not None and step in checkpoints:
                column = checkpoints.index(step)
                result["validation_loss"][repeat, column] = float(
                    problem.loss(variables, validation))
                result["validation_accuracy"][repeat, column] = float(
                    problem.accuracy(variables, validation))
            if step < steps:
                result["train_loss"][repeat, step] = float(
                    train_step(tuple(ops.convert_to_tensor(b[step]) for b in batches)))
    return result


def summarise(result):
    """Means over runs; a diverged run (non-finite final loss) makes its mean non-finite,
    written as null, and is counted in ``diverged_runs``."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in a std is no news
        return _summarise(result)


def _summarise(result):
    train = result["train_loss"]
    summary = {"final_train_loss_mean": float(np.mean(train[:, -1])),
               "final_train_loss_std": float(np.std(train[:, -1])),
               "mean_train_loss": float(np.mean(train)),
               "diverged_runs": int(np.sum(~np.isfinite(train[:, -1])))}
    if "validation_loss" in result:
        summary.update(final_validation_loss_mean=float(np.mean(result["validation_loss"][:, -1])),
                       final_validation_accuracy_mean=float(
                           np.mean(result["validation_accuracy"][:, -1])))
    return summary


def settings_of(config):
    """What makes two evaluations comparable: steps, seeds and problems."""
    settings = config["evaluation"]
    return {"steps": settings["steps"], "repeats": settings["repeats"], "seed": settings["seed"],
            "validation_every": settings["validation_every"],
            "evaluated_on": settings["problems"] or config["problems"]}


def has_result(config, directory, label):
    """True if ``label`` was already evaluated here with the same settings."""
    path = os.path.join(directory, "evaluation", f"{label}.json")
    if not os.path.exists(path):
        return False
    with open(path) as handle:
        try:
            summary = json.load(handle)
        except ValueError:
            return False
    return all(summary.get(key) == value for key, value in settings_of(config).items())


def evaluate(config, directory, label, make_optimizer):
    """Runs ``make_optimizer()`` on every evaluation problem; writes and returns the summary."""
    settings = config["evaluation"]
    arrays, summary = {}, {"label": label, **settings_of(config), "problems": []}
    for index, problem in enumerate(evaluation_problems(config)):
        result = curves(problem, make_optimizer, settings["steps"], settings["repeats"],
                        settings["seed"], settings["validation_every"],
                        description=f"{label} on problem {index}")
        arrays.update({f"problem{index}/{key}": value for key, value in result.items()})
        summary["problems"].append(summarise(result))
    folder = os.path.join(directory, "evaluation")
    checkpoints.save(os.path.join(folder, f"{label}.npz"), arrays, summary)
    checkpoints.write_text(os.path.join(folder, f"{label}.json"),
                           checkpoints.json_dumps_finite(summary, indent=2))
    return summary


def baseline_specs(config):
    """``(label, keras optimizer spec)`` for the baseline and each rate of its grid."""
    baseline = config["evaluation"]["baseline"]
    spec = {"class_name": baseline["class_name"], "config": dict(baseline["config"])}
    rates = baseline["learning_rates"] or [spec["config"].get("learning_rate", 0.001)]
    labelled = []
    for rate in rates:
        entry = copy.deepcopy(spec)
        entry["config"]["learning_rate"] = rate
        labelled.append((f"{baseline['class_name']}_lr{rate:g}", entry))
    return labelled


def keras_optimizer_factory(spec):
    """``run_seed -> optimizer``: a Keras optimiser draws nothing, so the seed is unused."""
    return lambda run_seed: keras.optimizers.get(copy.deepcopy(spec))


# Red (C3) is kept for the learned optimiser.
BASELINE_COLOURS = [f"C{k}" for k in range(10) if k != 3]


def plot(directory):
    """One PNG per problem under ``<run>/evaluation``: mean curves with min-max bands."""
    with np.errstate(invalid="ignore", over="ignore"):  # curves of diverged runs
        return _plot(directory)


def _plot(directory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = os.path.join(directory, "evaluation")
    labels = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(folder, "*.npz"))
                    if not p.endswith(".tmp.npz"))
    labels.sort(key=lambda label: not label.startswith("learned"))
    results = {label: checkpoints.load(os.path.join(folder, f"{label}.npz"))[0]
               for label in labels}
    problem_count = 1 + max(int(key.split("/")[0][7:]) for r in results.values() for key in r)
    written = []
    for index in range(problem_count):
        prefix = f"problem{index}/"
        panels = [("train_loss", "training loss (per batch)", True),
                  ("validation_loss", "validation loss", True),
                  ("validation_accuracy", "validation accuracy", False)]
        panels = [p for p in panels if any(prefix + p[0] in r for r in results.values())]
        figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2),
                                    squeeze=False)
        for axis, (key, title, log_scale) in zip(axes[0], panels):
            # A log axis needs a finite positive value (a run that overflowed has none).
            loggable = False
            for rank, label in enumerate(labels):
                result = results[label]
                if prefix + key not in result:
                    continue
                values = result[prefix + key]
                loggable = loggable or bool(np.any(np.isfinite(values) & (values > 0)))
                x = (result[prefix + "validation_step"] if key.startswith("validation")
                     else np.arange(1, values.shape[1] + 1))
                colour = "C3" if label.startswith("learned") else BASELINE_COLOURS[
                    rank % len(BASELINE_COLOURS)]
                width = 2.2 if label.startswith("learned") else 1.4
                axis.plot(x, np.mean(values, axis=0), color=colour, linewidth=width,
                          label=f"{label} (n={values.shape[0]})")
                axis.fill_between(x, np.min(values, axis=0), np.max(values, axis=0),
                                  color=colour, alpha=0.15, linewidth=0)
            axis.set_title(title)
            axis.set_xlabel("step")
            axis.grid(alpha=0.3)
            if log_scale and loggable:
                axis.set_yscale("log")
        axes[0][0].legend(fontsize=8)
        figure.suptitle(f"{os.path.basename(os.path.normpath(directory))}: problem {index} "
                        f"(mean, band = min..max over seeds)")
        figure.tight_layout()
        path = os.path.join(folder, f"problem{index}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written

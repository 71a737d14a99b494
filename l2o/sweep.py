"""Sweeps: a grid or random search over config overrides, one run directory per point.

    python sweep.py CONFIG --grid estimator/sigma=0.01,0.1 \
        --grid optimizer/config/learning_rate=1e-3,1e-2 [section/key=value ...]
    python sweep.py CONFIG --random 'optimizer/config/learning_rate=loguniform(1e-4,1e-1)' \
        --points 16 --seed 0 [--evaluate]

A grid is the product of its axes' values, the first axis varying slowest. A
random search draws ``--points`` points from ``numpy.random.default_rng(seed)``,
each axis in the order given: ``uniform(a,b)``, ``loguniform(a,b)``
(exp U(log a, log b)), ``randint(a,b)`` (a..b, both included) or
``choice(v1,v2,...)``. Each point is trained by ``api.train`` (train.py's code
path) in ``<sweep directory>/point_NNNN`` and scored by a number the run
already records: its best validation meta-loss, or with ``--evaluate`` the
evaluation of its best checkpoint (``evaluate.py``'s, without the baseline):
the final training loss averaged over seeds, then over evaluation problems.
Lower is better for both.

Every point's config is resolved and validated before any point trains, so a
bad key or value stops the sweep with one line naming it and writes nothing.
The sweep directory (default: the config's ``directory`` + ``_sweep``) holds

    sweep.json      the resolved spec: the command's config, overrides, axes and every point
    results.jsonl   one JSON line per finished point (its overrides, metric, periods, time)
    results.md      the finished points as a markdown table sorted by the metric, with
                    each run's last validation beside it (a run that collapsed after its
                    best period is marked: its best checkpoint is what load_optimizer loads)
    point_NNNN/     each point's run directory (config.json, checkpoints, summary.jsonl, ...)

Run again with the same command, a sweep skips its finished points; a point
killed after a finished period resumes from its checkpoint (exactly, as
resume.py would), one killed before any restarts. A different command on the
same directory is refused (``--overwrite`` starts afresh, deleting only what a sweep
writes there: the files above and the point directories), and so is a second sweep
while one runs there (``l2o.locks``: the ``lock`` file names its process). A point whose
training produced nothing finite (``training/stop_on_nonfinite``) is recorded
with its error and no metric, and the sweep goes on.
"""

import itertools
import json
import math
import os
import re
import shutil
import time

import numpy as np
from tqdm.auto import tqdm

from l2o import api, checkpoints, locks
from l2o.config import parse_override, yaml_load
from l2o.strategies.base import NonFiniteTraining
from l2o.validation import ConfigError, first_line

# What a sweep writes in its directory besides the point directories (and their
# temporary files while written); ``--overwrite`` deletes these and nothing else.
SWEEP_FILES = {name + suffix for name in ("sweep.json", "results.jsonl", "results.md")
               for suffix in ("", ".tmp")}
POINT_DIRECTORY = re.compile(r"point_\d{4,}")
METRICS = {"best_validation": "best validation meta-loss",
           "evaluation": "evaluation final train loss"}
EVALUATION_LABEL = "learned_best"


# --- the spec: axes and points ----------------------------------------------------------

def _split_top_level(text):
    """``"1,[2,3],{a: 4}"`` -> ``["1", "[2,3]", "{a: 4}"]``: commas inside brackets stay."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        depth += (char in "[{(") - (char in "]})")
        if char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _axis_key(text, flag):
    if "=" not in text:
        raise ConfigError(f"{flag} '{text}': not of the form section/key=...")
    key, _ = parse_override(text.split("=", 1)[0] + "=0")
    name = "/".join(str(part) for part in key)
    if name == "directory":
        raise ConfigError(f"{flag} directory: the sweep sets each point's directory; "
                          f"use --directory for the sweep's")
    return name, text.split("=", 1)[1]


def parse_grid(text):
    """``"estimator/sigma=0.01,0.1"`` -> ``("estimator/sigma", [0.01, 0.1])`` (YAML values)."""
    name, raw = _axis_key(text, "--grid")
    parts = _split_top_level(raw)
    if not raw.strip() or not all(parts):
        raise ConfigError(f"{name}: --grid needs comma-separated values, got '{raw}'")
    return name, [_yaml_value(part) for part in parts]


def _yaml_value(text):
    try:
        return yaml_load(text)
    except Exception:  # noqa: BLE001  (any YAML error: the text is then a plain string)
        return text


def _uniform(rng, low, high):
    return float(rng.uniform(low, high))


def _loguniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _randint(rng, low, high):
    return int(rng.integers(low, high, endpoint=True))


DISTRIBUTIONS = {"uniform": _uniform, "loguniform": _loguniform, "randint": _randint}


def parse_random(text):
    """``"key=loguniform(1e-4,1e-1)"`` -> ``("key", ("loguniform", [0.0001, 0.1]))``."""
    name, raw = _axis_key(text, "--random")
    raw = raw.strip()
    kind, _, rest = raw.partition("(")
    kinds = ", ".join(f"{option}(a,b)" for option in DISTRIBUTIONS) + ", choice(v1,v2,...)"
    if kind not in (*DISTRIBUTIONS, "choice") or not rest.endswith(")"):
        raise ConfigError(f"{name}: --random takes {kinds}; got '{raw}'")
    arguments = [_yaml_value(part) for part in _split_top_level(rest[:-1])]
    if kind == "choice":
        if not rest[:-1].strip():
            raise ConfigError(f"{name}: choice() needs at least one value")
        return name, (kind, arguments)
    numbers = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in arguments)
    if len(arguments) != 2 or not numbers or not arguments[0] < arguments[1]:
        raise ConfigError(f"{name}: {kind}(a,b) needs two numbers a < b, got '{raw}'")
    if kind == "loguniform" and arguments[0] <= 0:
        raise ConfigError(f"{name}: loguniform(a,b) needs 0 < a, got '{raw}'")
    if kind == "randint" and not all(isinstance(a, int) for a in arguments):
        raise ConfigError(f"{name}: randint(a,b) needs integers, got '{raw}'")
    return name, (kind, arguments)


def _unique_axes(axes, flag):
    names = [name for name, _ in axes]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{name}: given to {flag} twice")
    return dict(axes)


def grid_points(axes):
    """Every combination of the axes' values (a mapping key -> values), first axis slowest."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def random_points(axes, points, seed):
    """``points`` draws of the axes (a mapping key -> (kind, arguments)) from ``seed``."""
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(points):
        point = {}
        for name, (kind, arguments) in axes.items():
            if kind == "choice":
                point[name] = arguments[int(rng.integers(len(arguments)))]
            else:
                point[name] = DISTRIBUTIONS[kind](rng, *arguments)
        drawn.append(point)
    return drawn


def point_overrides(point, directory):
    """A point's ``section/key=value`` overrides (YAML values), its directory last."""
    return [f"{name}={yaml_text(value)}" for name, value in point.items()] + \
        [f"directory={json.dumps(directory)}"]


def yaml_text(value):
    """``value`` written as a YAML flow value that reads back as itself: JSON, but for the
    non-finite floats, which JSON would spell ``Infinity`` (a string to YAML)."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))}: {yaml_text(item)}"
                               for key, item in value.items()) + "}"
    return json.dumps(value)


def plan(config, overrides=(), grid=(), random=(), points=None, seed=0, metric="best_validation",
         directory=None):
    """The sweep's spec and every point's resolved config; ConfigError before any work.

    ``grid`` and ``random`` are ``--grid``/``--random`` texts; only one kind may be given.
    """
    if bool(grid) == bool(random):
        raise ConfigError("give --grid axes or --random axes (one kind per sweep)")
    if grid and points is not None:
        raise ConfigError("--points is for --random; a grid has one point per combination")
    if random and (points is None or points < 1):
        raise ConfigError(f"--points: a random search needs at least 1 point, got {points}")
    base = api.resolve(config, overrides)
    directory = directory or base["directory"].rstrip("/\\") + "_sweep"
    if grid:
        axes = _unique_axes([parse_grid(text) for text in grid], "--grid")
        drawn, search = grid_points(axes), "grid"
    else:
        axes = _unique_axes([parse_random(text) for text in random], "--random")
        drawn, search = random_points(axes, points, seed), "random"
    resolved = []
    for index, point in enumerate(drawn):
        try:
            resolved.append(api.resolve(config, [*overrides, *point_overrides(
                point, os.path.join(directory, f"point_{index:04d}"))]))
        except ConfigError as error:
            shown = " ".join(f"{name}={yaml_text(value)}" for name, value in point.items())
            raise ConfigError(f"point {index} ({shown}): {error}") from None
    spec = {"config": os.fspath(config) if isinstance(config, (str, os.PathLike)) else config,
            "overrides": list(overrides), "search": search, "metric": metric,
            "axes": {name: list(value) for name, value in axes.items()},
            "seed": seed if random else None, "directory": directory,
            "points": drawn, "base": base}
    return json.loads(checkpoints.json_dumps_finite(spec)), resolved


# --- running ----------------------------------------------------------------------------

def _claim(spec, overwrite):
    """Creates the sweep directory, or checks that the one there holds this same sweep."""
    directory = spec["directory"]
    path = os.path.join(directory, "sweep.json")
    if os.path.exists(path) and not overwrite:
        with open(path) as handle:
            try:
                written = json.load(handle)
            except ValueError:
                written = {}
        for key in spec:
            if written.get(key) != spec[key]:
                raise ConfigError(f"{directory} holds another sweep ('{key}' differs from "
                                  f"its sweep.json): rerun its own command, choose "
                                  f"--directory, or pass --overwrite")
    elif os.path.exists(directory) and overwrite:
        _remove_sweep(directory)
    elif os.path.isdir(directory) and set(os.listdir(directory)) - {locks.NAME}:
        raise ConfigError(f"{directory} exists and holds no sweep.json: choose --directory, "
                          f"or pass --overwrite to sweep there (its other files are kept)")
    checkpoints.write_text(path, json.dumps(spec, indent=2))


def _remove_sweep(directory):
    """Deletes what a sweep wrote in ``directory`` (``SWEEP_FILES``, the point directories),
    and nothing else: the folder's other files stay, as train.py's --overwrite keeps a
    folder's files that are not a run."""
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.islink(path):
            if entry in SWEEP_FILES or POINT_DIRECTORY.fullmatch(entry):
                os.unlink(path)  # the link, not what it points at
        elif entry in SWEEP_FILES and os.path.isfile(path):
            os.remove(path)
        elif POINT_DIRECTORY.fullmatch(entry) and os.path.isdir(path):
            shutil.rmtree(path)


def read_results(directory):
    """The finished points' records, keyed by point; drops a line a kill tore."""
    path = os.path.join(directory, "results.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        lines = [line for line in handle if line.strip()]
    records = {}
    for line in lines:
        try:
            record = json.loads(line)
            records[record["point"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    if len(records) < len(lines):  # rewritten so the next line does not join a torn one
        checkpoints.write_text(path, "".join(json.dumps(records[key]) + "\n" for key in records))
    return records


def _train_point(config, say):
    """Trains (or continues) one point's run; returns its final state."""
    directory = config["directory"]
    if os.path.exists(os.path.join(directory, "checkpoints", "last.npz")) and \
            os.path.exists(os.path.join(directory, "config.json")):
        say(f"{directory}: resuming after its last finished period")
        return api.resume(directory)
    if os.path.exists(directory):
        say(f"{directory}: no finished period; restarting it")
    return api.train(config, overwrite=True)


def _last_validation(directory):
    """The validation meta-loss of the run's last period (None if it has none): beside the
    best, it shows a run that collapsed after its best period."""
    path = os.path.join(directory, "summary.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]).get("validation_meta_loss") if lines else None
    except ValueError:  # a line cut by a kill
        return None


def _evaluate_point(config):
    """The mean over evaluation problems of the best checkpoint's final training loss."""
    from l2o import evaluation
    from l2o.runs import load_optimizer

    directory = config["directory"]
    path = os.path.join(directory, "evaluation", f"{EVALUATION_LABEL}.json")
    if evaluation.has_result(config, directory, EVALUATION_LABEL):
        with open(path) as handle:
            summary = json.load(handle)
    else:
        load_optimizer(directory, "best")  # fails early on a run without a best checkpoint
        summary = evaluation.evaluate(
            config, directory, EVALUATION_LABEL,
            lambda run_seed: load_optimizer(directory, "best", run_seed=run_seed))
    losses = [problem["final_train_loss_mean"] for problem in summary["problems"]]
    return float(np.mean([math.inf if loss is None else loss for loss in losses]))


def run_point(index, point, config, metric, say=print):
    """Trains point ``index`` and scores it; its results.jsonl record."""
    import keras

    started = time.perf_counter()
    record = {"point": index, "overrides": point, "directory": config["directory"]}
    try:
        state = _train_point(config, say)
        record.update(periods=state["period"] + 1, best_validation=state["best_validation"],
                      last_validation=_last_validation(config["directory"]))
        if metric == "evaluation":
            record["evaluation_final_train_loss"] = _evaluate_point(config)
        record["metric"] = record["best_validation" if metric == "best_validation" else
                                  "evaluation_final_train_loss"]
    except (NonFiniteTraining, checkpoints.CheckpointError) as error:
        # A diverging point is a result of the sweep, not the end of it.
        record.update(metric=None, error=first_line(error))
    finally:
        keras.utils.clear_session()  # each point builds its own graphs; free the last one's
    record["seconds"] = round(time.perf_counter() - started, 2)
    return json.loads(checkpoints.json_dumps_finite(record))


def table(spec, records):
    """The finished points as a markdown table, best metric first (no metric last)."""
    names = list(spec["axes"])
    rows = sorted(records, key=lambda r: (r["metric"] is None, r["metric"] or 0.0, r["point"]))
    lines = ["| rank | point | " + " | ".join(f"`{name}`" for name in names)
             + f" | {METRICS[spec['metric']]} | last validation | periods | seconds |",
             "| " + " | ".join(["---"] * (len(names) + 6)) + " |"]
    for rank, record in enumerate(rows, 1):
        metric = "—" if record["metric"] is None else f"{record['metric']:.4g}"
        if record.get("error"):
            metric += " (failed)"
        values = [_show(record["overrides"][name]) for name in names]
        last, best = record.get("last_validation"), record.get("best_validation")
        shown_last = "—" if last is None else f"{last:.4g}"
        if None not in (last, best) and last > best + 0.1 * abs(best):
            shown_last += " (worse than its best)"
        lines.append(f"| {rank} | {record['point']} | " + " | ".join(values)
                     + f" | {metric} | {shown_last} | {record.get('periods', '—')} | "
                     + f"{record['seconds']:.0f} |")
    return "\n".join(lines)


def _show(value):
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def sweep(config, overrides=(), grid=(), random=(), points=None, seed=0, evaluate=False,
          directory=None, overwrite=False, say=print):
    """Runs the sweep (see the module docstring); returns its records, best first."""
    spec, resolved = plan(config, overrides, grid, random, points, seed,
                          "evaluation" if evaluate else "best_validation", directory)
    directory = spec["directory"]
    with locks.RunLock(directory, "--directory"):  # one sweep at a time in a directory
        return _run(spec, resolved, overwrite, say)


def _run(spec, resolved, overwrite, say):
    directory = spec["directory"]
    _claim(spec, overwrite)
    records = read_results(directory)
    results = os.path.join(directory, "results.jsonl")
    total = len(resolved)
    # Lines said while the bar is drawn go above it.
    note = tqdm.write if say is print else say
    if records:
        say(f"{directory}: {len(records)} of {total} points already finished; skipping them")
    with tqdm(total=total, initial=len(records), desc="sweep", unit="point",
              dynamic_ncols=True, disable=None) as bar:
        for index, (point, point_config) in enumerate(zip(spec["points"], resolved)):
            if index in records:
                continue
            record = run_point(index, point, point_config, spec["metric"], note)
            checkpoints.append_line(results, json.dumps(record))
            records[index] = record
            shown = "—" if record["metric"] is None else f"{record['metric']:.4g}"
            note(f"point {index}: {_show_point(point)}: {METRICS[spec['metric']]} {shown}"
                       + (f" ({record['error']})" if record.get("error") else ""))
            bar.update(1)
    ordered = [records[index] for index in sorted(records)]
    markdown = table(spec, ordered)
    checkpoints.write_text(os.path.join(directory, "results.md"), markdown + "\n")
    say(markdown)
    return sorted(ordered, key=lambda r: (r["metric"] is None, r["metric"] or 0.0, r["point"]))


def _show_point(point):
    return " ".join(f"{name}={_show(value)}" for name, value in point.items())


def add_arguments(parser):
    """The sweep command's options (l2o/cli.py adds the config and overrides)."""
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="an axis of a grid search (repeat for more axes)")
    parser.add_argument("--random", action="append", default=[], metavar="KEY=DIST(...)",
                        help="an axis of a random search: uniform(a,b), loguniform(a,b), "
                             "randint(a,b) or choice(v1,v2,...) (repeat for more axes)")
    parser.add_argument("--points", type=int, help="points a random search draws")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random search's draws")
    parser.add_argument("--evaluate", action="store_true",
                        help="score each point by evaluating its best checkpoint (final train "
                             "loss) instead of its best validation meta-loss")
    parser.add_argument("--directory", help="the sweep directory (default: the config's "
                                            "directory + _sweep)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh: delete what a sweep wrote in the sweep directory "
                             "(sweep.json, results, point_NNNN/), keeping its other files")

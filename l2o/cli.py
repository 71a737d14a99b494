"""Command-line entry points: l2o-train, l2o-resume, l2o-evaluate, l2o-baseline, l2o-sweep.

Every command takes ``section/key=value`` overrides after its positional
argument (values are YAML scalars or lists: ``strategy/num_periods=3``,
``network/layers=[10,10]``, ``problems/0/kwargs/batch_size=32``). A bad key
or value stops the command before it does or writes anything, with one line
naming the key and exit status 2 (what needs no Keras, such as a config file's syntax
and sections, is checked before Keras is imported: ``precheck``); so does a
``KERAS_BACKEND`` other than tensorflow or
jax, checked before Keras is imported (unset, with TensorFlow absent and JAX installed,
the commands choose jax).

Exit status: 0 done; 2 a usage, config or data error (one line); 3 ``evaluate.py``
finished but the learned optimiser diverged (a non-finite final training loss) in some
runs, which it names (its results are written all the same); 130 interrupted.
"""

import argparse
import errno
import importlib.util
import json
import os
import sys

from l2o import api

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BACKENDS = ("tensorflow", "jax")


def choose_backend(environ=os.environ):
    """Checks ``KERAS_BACKEND`` before Keras reads it; None, or the one line saying what is
    wrong. Unset where TensorFlow (Keras's default) is not installed but JAX is, it is set
    to jax: a JAX-only install then runs without the variable."""
    name = environ.get("KERAS_BACKEND")
    choices = " or ".join(f"KERAS_BACKEND={backend}" for backend in BACKENDS)
    if name:
        if name not in BACKENDS:
            return (f"KERAS_BACKEND={name}: l2o runs on Keras's tensorflow or jax backend; "
                    f"set {choices}")
        return None if importlib.util.find_spec(name) is not None else (
            f"KERAS_BACKEND={name}: {name} is not installed; pip install \"l2o[{name}]\", or "
            f"set KERAS_BACKEND to the backend installed")
    if importlib.util.find_spec("tensorflow") is not None:
        return None
    if importlib.util.find_spec("jax") is not None:
        environ["KERAS_BACKEND"] = "jax"
        return None
    return ("neither TensorFlow nor JAX is installed: install one (pip install "
            "\"l2o[tensorflow]\" or \"l2o[jax]\") and set " + choices)


def _import_backend_quietly():
    """Imports Keras and the backend it runs on with file descriptor 2 muted.

    TensorFlow's C++ start-up lines (oneDNN notice, CUDA probing) are written
    before any log level applies; they would bury a command's one-line error.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


OVERRIDES_HELP = "section/key=value overrides, e.g. strategy/num_periods=3"
INTERRUPTED = dict.fromkeys(("train", "resume"), ": the last finished period is checkpointed; "
                                                 "continue with resume.py")
INTERRUPTED["sweep"] = ": finished points are in the sweep's results.jsonl; rerun the same " \
                       "command to continue"


class UsageError(Exception):
    """A command used wrongly, reported as one line."""


# evaluate.py's exit status when it finished but the learned optimiser diverged (a
# non-finite final training loss) in some of the runs; its results are still written.
DIVERGED = 3


class Diverged(Exception):
    """An evaluation that finished with diverged runs, reported as one line (exit 3)."""


def os_error_line(error):
    """An OSError as one line naming its file: ``path: No space left on device``."""
    from l2o.validation import first_line

    what = error.strerror or first_line(error)
    if error.filename is None:
        return f"{type(error).__name__}: {what}"
    writable = "; choose a folder you can write to"
    hint = {errno.ENOSPC: "; free some space, then run the command again (resume.py "
                          "continues a run from its last finished period)",
            errno.EACCES: writable, errno.EROFS: writable}.get(error.errno, "")
    return f"{error.filename}: {what}{hint}"


# Options that take a value (the token after them is not a positional argument).
VALUED_OPTIONS = ("--grid", "--random", "--points", "--seed", "--directory", "--checkpoint")


def _arguments(argv):
    """``(positionals, overrides)`` of a command line, options and their values left out."""
    positionals, overrides, skip = [], [], False
    for token in argv:
        if skip:
            skip = False
        elif token.startswith("-"):
            skip = token in VALUED_OPTIONS
        elif "=" in token:
            overrides.append(token)
        else:
            positionals.append(token)
    return positionals, overrides


def precheck(command, argv):
    """What can be found wrong before Keras and TensorFlow are imported (seconds): a config
    file that is missing, not valid YAML/JSON, or has an unknown section; an override that
    is malformed or names no section; a run directory that does not exist, or that another
    process is writing (resume). Raises ConfigError or UsageError; returns whether the
    command needs no Keras at all (``--list``, ``--help``). The full checks follow once
    Keras is imported."""
    from l2o import catalog, config_files

    if "-h" in argv or "--help" in argv:
        return command != "sweep"  # the sweep's options come with its (Keras) module
    if command == "train" and "--list" in argv:
        return True
    positionals, overrides = _arguments(argv)
    for text in overrides:
        keys, _ = config_files.parse_override(text)
        config_files.check_sections({keys[0]: None})
    if not positionals:
        return False
    target = positionals[0]
    if command in ("train", "sweep"):
        path = catalog.config_path(target)
        config_files.check_sections(config_files.load_file(path), f"{path}: ")
    elif command == "resume":
        from l2o.locks import RunLock
        from l2o.runs import read_config

        read_config(target)
        RunLock(target).check()
    elif not os.path.exists(target):  # evaluate, baseline
        raise _no_run_directory(target)
    return False


def _no_run_directory(target):
    return UsageError(f"{target}: no run directory (nor a config file) there; give the "
                      f"directory a run trained in (its config's directory)")


def _entry(function):
    def main(argv=None):
        problem = choose_backend()  # before Keras is imported: it reads the variable once
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            raise SystemExit(2)
        from l2o.validation import ConfigError

        argv = sys.argv[1:] if argv is None else argv
        try:
            if not precheck(function.__name__, argv):
                _import_backend_quietly()
            function(argv)
        except (ConfigError, UsageError) as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as error:
            # Unreadable files, a full disk: the message names the file.
            print(f"error: {os_error_line(error)}", file=sys.stderr)
            raise SystemExit(2) from None
        except Diverged as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(DIVERGED) from None
        except KeyboardInterrupt:
            print(f"interrupted{INTERRUPTED.get(function.__name__, '')}", file=sys.stderr)
            raise SystemExit(130) from None

    main.__doc__ = function.__doc__
    return main


def _parser(description, positional, positional_help, optional=False):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(positional, nargs="?" if optional else None, help=positional_help)
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    return parser


def _done(state, directory):
    print(f"done: {state['period'] + 1} periods in {directory}; best validation meta-loss "
          f"{state['best_validation']:.4g}")
    if state.get("extend_with"):
        print(f"{directory} had already finished; to extend it: resume.py {directory} "
              f"{state['extend_with']}")


@_entry
def train(argv):
    """Meta-trains a learned optimiser from a config file or a shipped config's name."""
    from l2o import catalog

    parser = _parser("Meta-train a learned optimiser.", "config",
                     "JSON or YAML config file, or a shipped config's name (see --list)",
                     optional=True)
    parser.add_argument("--list", action="store_true", help="name the shipped configs and stop")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a directory that already holds a run")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and stop")
    args = parser.parse_intermixed_args(argv)
    if args.list:
        print(catalog.listing())
        return
    if args.config is None:
        raise UsageError("give a config file or a shipped config's name (l2o-train --list)")
    resolved = api.resolve(args.config, args.overrides)
    if args.dry_run:
        print(json.dumps(resolved, indent=2))
        return
    _done(api.train(resolved, overwrite=args.overwrite), resolved["directory"])


@_entry
def resume(argv):
    """Continues a run from its last finished period (overrides may extend it)."""
    args = _parser("Resume meta-training.", "directory", "run directory").parse_intermixed_args(argv)
    _done(api.resume(args.directory, args.overrides), args.directory)


def _evaluation_config(target, overrides):
    """A run directory's (or a config file's) resolved config and output directory."""
    from l2o import config as config_module
    from l2o.runs import read_config

    if os.path.isdir(target):
        return config_module.resolve(read_config(target), overrides), target
    if not os.path.exists(target):
        raise _no_run_directory(target)
    resolved = config_module.resolve(config_module.load_file(target), overrides)
    return resolved, resolved["directory"]


@_entry
def evaluate(argv):
    """Evaluates a meta-trained optimiser against the baseline and plots both."""
    parser = _parser("Evaluate a meta-trained optimiser.", "directory", "run directory")
    parser.add_argument("--checkpoint", default="best", help="best, last or period_NNNN")
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not run the baseline when its results are missing")
    args = parser.parse_intermixed_args(argv)
    resolved, directory = _evaluation_config(args.directory, args.overrides)
    from l2o import evaluation
    from l2o.runs import load_optimizer

    load_optimizer(directory, args.checkpoint)  # fails early on a missing checkpoint
    label = f"learned_{args.checkpoint}"
    diverged = _report(label, evaluation.evaluate(
        resolved, directory, label,
        lambda run_seed: load_optimizer(directory, args.checkpoint, run_seed=run_seed)))
    if not args.no_baseline:
        for label, spec in evaluation.baseline_specs(resolved):
            if not evaluation.has_result(resolved, directory, label):
                _report(label, evaluation.evaluate(
                    resolved, directory, label, evaluation.keras_optimizer_factory(spec)))
    for path in evaluation.plot(directory):
        print(f"plot: {path}")
    if diverged:
        raise Diverged(f"{label} diverged (a non-finite final training loss) "
                       f"{'; '.join(diverged)}; its results are in "
                       f"{os.path.join(directory, 'evaluation')}; try another checkpoint "
                       f"(--checkpoint best, or period_NNNN)")


@_entry
def baseline(argv):
    """Evaluates Keras optimisers (a learning-rate grid) on a run's problems."""
    args = _parser("Evaluate baseline Keras optimisers.", "target",
                   "run directory, or a config file").parse_intermixed_args(argv)
    resolved, directory = _evaluation_config(args.target, args.overrides)
    from l2o import evaluation

    for label, spec in evaluation.baseline_specs(resolved):
        _report(label, evaluation.evaluate(
            resolved, directory, label, evaluation.keras_optimizer_factory(spec)))
    for path in evaluation.plot(directory):
        print(f"plot: {path}")


@_entry
def sweep(argv):
    """Meta-trains one run per point of a grid or random search over config overrides."""
    from l2o import sweep as sweep_module

    parser = _parser("Grid or random search over config overrides, one run per point.",
                     "config", "JSON or YAML config file, or a shipped config's name")
    sweep_module.add_arguments(parser)
    args = parser.parse_intermixed_args(argv)
    records = sweep_module.sweep(args.config, args.overrides, args.grid, args.random,
                                 args.points, args.seed, args.evaluate, args.directory,
                                 args.overwrite)
    if records and records[0]["metric"] is not None:
        print(f"best: point {records[0]['point']} in {records[0]['directory']}")


def _report(label, summary):
    """Prints one line per problem; returns ``"on problem i in k of n runs"`` for each
    problem where runs diverged."""
    diverged = []
    for index, result in enumerate(summary["problems"]):
        runs = result.get("diverged_runs", 0)
        if runs:
            where = f"in {runs} of {summary.get('repeats', '?')} runs"
            diverged.append(f"on problem {index} {where}")
            parts = [f"diverged {where}"]
        else:
            parts = [(f"final train loss {result['final_train_loss_mean']:.4g} "
                      f"± {result['final_train_loss_std']:.2g}")]
        if "final_validation_accuracy_mean" in result:
            parts.append(f"validation accuracy {result['final_validation_accuracy_mean']:.3f}")
        print(f"{label} problem {index}: " + ", ".join(parts))
    return diverged

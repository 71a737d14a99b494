"""What every strategy shares: the run directory, checkpoints, logs and progress.

A run directory holds
    config.json              the resolved config (resume.py reads it back)
    checkpoints/last.npz     everything needed to resume after the last period
    checkpoints/previous.npz the same after the period before: resume falls back
                             to it when last.npz is damaged (one more file of
                             last.npz's size, where full state in every period
                             file would multiply the disk a run takes)
    checkpoints/best.npz     meta-weights of the best validation so far
    checkpoints/period_NNNN.npz   meta-weights after each period
    summary.jsonl            one JSON line per period (null for a non-finite number)
    tensorboard/             the same scalars for TensorBoard
    lock                     while a process trains there: its id (``l2o.locks``)
Every checkpoint records the config it must match (``runs.checkpoint_record``).
"""

import inspect
import json
import math
import os
import shutil
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from l2o import backend, checkpoints, import_names, runs
from l2o.validation import ConfigError, check_choice


class NonFiniteTraining(ConfigError):
    """Training that produced nothing finite: the config's scales or rates cannot train."""


# Named annealing schedules: the factor on training/p_teacher in period i.
NAMED_SCHEDULES = {"constant": lambda i: 1.0, "inverse": lambda i: 1.0 / (1.0 + i),
                   "halving": lambda i: 0.5 ** i}


class Strategy:
    """Base class: subclasses define ``run_periods``; keyword defaults are the config's.

    Options every strategy has: ``epochs_per_period``; validation after each
    period on ``validation_repeat`` fresh runs per problem of
    ``validation_unroll`` steps from seeds ``validation_seed``,
    ``validation_seed + 1``, ...; and ``annealing_schedule``, the factor on
    ``training/p_teacher`` in period i: a float a gives exp(-a i), a list gives
    its i-th entry (the last one repeated), a name one of ``NAMED_SCHEDULES``,
    a callable (or its import name) ``f(i)``.
    """

    def __init__(self, epochs_per_period=10, validation_unroll=50, validation_seed=12345,
                 validation_repeat=2, annealing_schedule=0.5, **options):
        self.options = {"epochs_per_period": epochs_per_period,
                        "validation_unroll": validation_unroll,
                        "validation_seed": validation_seed,
                        "validation_repeat": validation_repeat,
                        "annealing_schedule": annealing_schedule, **options}

    @classmethod
    def validate_config(cls, strategy):
        """Raises ConfigError naming ``strategy/<key>`` for a value out of range."""
        for key in ("epochs_per_period", "validation_unroll", "validation_repeat"):
            if strategy[key] < 1:
                raise ConfigError(f"strategy/{key}: must be at least 1, got {strategy[key]}")
        import_names.callable_or_checked("strategy/annealing_schedule",
                                       strategy["annealing_schedule"], _check_annealing_schedule)

    def imitation_factor(self, period):
        schedule = import_names.loaded("strategy/annealing_schedule",
                                     self.options["annealing_schedule"])
        if callable(schedule):
            factor = schedule(period)
            if not isinstance(factor, (int, float, np.number)) or not 0 <= factor <= 1:
                raise ConfigError(f"strategy/annealing_schedule: gave {factor!r} for period "
                                  f"{period}; it must give a number in [0, 1]")
            return float(factor)
        if isinstance(schedule, str):
            return NAMED_SCHEDULES[schedule](period)
        if isinstance(schedule, list):
            return float(schedule[min(period, len(schedule) - 1)])
        return float(np.exp(-schedule * period))

    def period_metrics(self, period, sample_unroll):
        """Trains one period and validates; the metrics ``finish_period`` records."""
        metrics = self.train_period(period, sample_unroll)
        metrics.update(self.trainer.validate(self.options["validation_unroll"],
                                             self.options["validation_seed"],
                                             self.options["validation_repeat"]))
        return metrics

    def run(self, trainer, directory):
        """Trains in ``directory``, resuming after its last finished period if any.

        Returns the run's state, with ``periods_trained`` (by this call) and, where that
        is none (a finished run resumed), ``extend_with``: the override that extends it.
        """
        self.trainer, self.directory = trainer, directory
        self.state = {"period": -1, "best_validation": float("inf")}
        self._rotate_last = self._resume()
        runs.save_config(trainer.config, directory)
        self._restore_logs(self.state["period"])
        first = self.state["period"]
        self.run_periods()
        if not math.isfinite(self.state["best_validation"]):
            self._non_finite(f"{directory}: no period had a finite validation meta-loss, so the "
                             f"run has no best checkpoint (its periods are in checkpoints/)")
        trained = self.state["period"] - first
        return dict(self.state, periods_trained=trained,
                    extend_with=None if trained else self.extension())

    def extension(self):
        """The ``section/key=value`` override that makes a finished run go on (resume.py),
        or None where the strategy has none."""

    def _resume(self):
        """Restores the newest intact full state: last.npz, else previous.npz (saying so).

        Returns whether the next checkpoint may keep last.npz as previous.npz:
        not after a fall-back, which would replace the intact previous state
        by the damaged file.
        """
        folder = os.path.join(self.directory, "checkpoints")
        paths = [os.path.join(folder, name) for name in ("last.npz", "previous.npz")]
        if not any(os.path.exists(path) for path in paths):
            return True
        problems = []
        for path in paths:
            try:
                self._load_state(path)
            except checkpoints.CheckpointError as error:
                problems.append(str(error))
                continue
            if problems:
                print(f"warning: {problems[0]}; resuming from {os.path.basename(path)}, the "
                      f"state after period {self.state['period']}", file=sys.stderr)
            return not problems
        raise checkpoints.CheckpointError(
            f"{folder}: no intact checkpoint to resume from ({'; '.join(problems)}); "
            f"start afresh with train.py --overwrite")

    def _load_state(self, path):
        arrays, info = checkpoints.load(path)
        runs.check_checkpoint(path, info, self.trainer.config,
                              os.path.join(self.directory, "config.json"))
        try:
            self.trainer.load_state_arrays(arrays, info["trainer"])
        except KeyError as error:  # an entry looked up in a mapping the trainer built itself
            raise checkpoints.CheckpointError(
                f"{path}: incomplete checkpoint: no entry {error}") from None
        state = info["strategy"]
        # Looked up by name: an incomplete file raises CheckpointError here, and resume falls back.
        self.state = dict(state, period=state["period"], best_validation=state["best_validation"])

    def _restore_logs(self, period):
        """Forgets the logs of periods that a kill cut short of their checkpoint.

        Their summary lines go; TensorBoard, which cannot forget a step, is then
        rewritten from the lines that stay, so no step is logged twice.
        """
        path = os.path.join(self.directory, "summary.jsonl")
        logdir = os.path.join(self.directory, "tensorboard")
        lines, kept, records = [], [], []
        if os.path.exists(path):
            with open(path) as handle:
                lines = [line for line in handle if line.strip()]
        for line in lines:
            try:
                record = json.loads(line)
                finished = record["period"] <= period
            except (ValueError, KeyError, TypeError):  # a line torn by a kill
                continue
            if finished:
                kept.append(line)
                records.append(record)
        rewrite = len(kept) < len(lines)
        if rewrite:
            checkpoints.write_text(path, "".join(kept))
            shutil.rmtree(logdir, ignore_errors=True)
        self.log = backend.ScalarLog(logdir)
        for record in records if rewrite else ():
            self.log.write(record["period"], _scalars(record))

    def _non_finite(self, message):
        """Stops the run with ``message`` (training/stop_on_nonfinite), or warns and goes on."""
        if self.trainer.config["training"]["stop_on_nonfinite"]:
            raise NonFiniteTraining(f"{message}; check the config's scales and learning rates "
                                    f"(training/stop_on_nonfinite=false goes on regardless)")
        tqdm.write(f"warning: {message}", file=sys.stderr)

    def progress(self, total, description):
        return tqdm(total=total, desc=description, unit="trunc", mininterval=1.0,
                    dynamic_ncols=True, leave=False, disable=None)

    def train_period(self, period, sample_unroll):
        """Runs ``epochs_per_period`` epochs; returns the period's training metrics."""
        trainer = self.trainer
        training = trainer.config["training"]
        # Unknown ahead with depth 0, where a pass over the data ends a trajectory.
        truncations = (self.options["epochs_per_period"] * len(trainer.problems)
                       * training["epochs"] * training["depth"]) or None
        imitation = training["p_teacher"] * self.imitation_factor(period)
        started, inner_steps, attempted = time.perf_counter(), 0, 0
        restarts = trainer.worker_restarts()
        losses = {"meta_loss": [], "imitation_loss": []}
        with self.progress(truncations, f"period {period}") as bar:
            def on_truncation(meta_loss, steps):
                nonlocal inner_steps, attempted
                inner_steps += steps
                attempted += 1
                bar.set_postfix(loss=f"{meta_loss:.4f}", refresh=False)
                bar.update(1)

            for epoch in range(self.options["epochs_per_period"]):
                for kind, values in trainer.train_epoch(period, epoch, sample_unroll, imitation,
                                                        on_truncation).items():
                    losses[kind].extend(values)
        if attempted and not any(losses.values()):
            # The trainer skips a non-finite update; skipping all of them trains nothing.
            self._non_finite(f"period {period}: no meta-update was finite (all {attempted} "
                             f"truncations skipped)")
        metrics = {f"train_{kind}": float(np.mean(values))
                   for kind, values in losses.items() if values}
        metrics["inner_steps_per_second"] = inner_steps / (time.perf_counter() - started)
        if restarts is not None:
            metrics["worker_restarts"] = trainer.worker_restarts() - restarts
        return metrics

    def finish_period(self, period, metrics):
        """Checkpoints and logs a finished period (``metrics`` includes validation)."""
        # A non-finite validation (-inf where a run's loss reached exactly 0 under a log
        # objective, NaN where it blew up) ranks nothing: it can never become the best.
        validation = metrics["validation_meta_loss"]
        improved = math.isfinite(validation) and validation < self.state["best_validation"]
        self.state = dict(self.state, period=period,
                          best_validation=validation if improved
                          else self.state["best_validation"])
        folder = os.path.join(self.directory, "checkpoints")
        weights = {f"meta/{k}": v for k, v in self.trainer.meta_weights().items()}
        meta_info = {"period": period, **metrics,
                     "config": runs.checkpoint_record(self.trainer.config)}
        checkpoints.save(os.path.join(folder, f"period_{period:04d}.npz"), weights, meta_info)
        if improved:
            checkpoints.save(os.path.join(folder, "best.npz"), weights, meta_info)
        # Logs first: a kill before last.npz lands makes resume redo this period and
        # drop its logs, while the reverse order would lose the summary line.
        record = {"period": period, **metrics, "best": improved}
        checkpoints.append_line(os.path.join(self.directory, "summary.jsonl"),
                                checkpoints.json_dumps_finite(record))
        self.log.write(period, _scalars(record))
        arrays, trainer_info = self.trainer.state_arrays()
        checkpoints.save(os.path.join(folder, "last.npz"), arrays,
                         {"strategy": self.state, "trainer": trainer_info, **meta_info},
                         previous=os.path.join(folder, "previous.npz") if self._rotate_last
                         else None)
        self._rotate_last = True
        tqdm.write(f"period {period}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            + (" (best)" if improved else ""))


def _check_annealing_schedule(schedule):
    if isinstance(schedule, str):
        check_choice("strategy/annealing_schedule", schedule, NAMED_SCHEDULES)
        return
    entries = schedule if isinstance(schedule, list) else [schedule]
    if not entries or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                              and x >= 0 for x in entries) or (
            isinstance(schedule, list) and max(entries) > 1):
        raise ConfigError(f"strategy/annealing_schedule: a rate a >= 0 (exp(-a i)) or a "
                          f"non-empty list of probabilities, got {schedule!r}")


def _scalars(record):
    """The TensorBoard scalars of a summary record: its finite numbers but the period."""
    return {key: value for key, value in record.items()
            if key != "period" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def unroll_sampler(distribution):
    """``generator -> length`` for an int (fixed), a float p in (0, 1) (geometric, mean 1/p),
    or a callable (or its import name) that draws a length.

    Lengths below 2 become 2: the first loss of a truncation is taken before
    any learned update, so a 1-step truncation has no meta-gradient. A callable
    of one parameter is given the truncation's numpy Generator, so a resumed
    run draws the same lengths; one of none (the l2o toolkit's form) draws from
    wherever it likes.
    """
    name = "strategy/unroll_distribution"
    distribution = import_names.loaded(name, distribution)
    if callable(distribution):
        takes_generator = any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                   p.POSITIONAL_OR_KEYWORD)
                              for p in inspect.signature(distribution).parameters.values())
        return lambda generator: unroll_length(
            name, distribution(generator) if takes_generator else distribution())
    if isinstance(distribution, int):
        return lambda generator: distribution
    return lambda generator: max(2, int(generator.geometric(distribution)))


def unroll_length(name, value):
    """A truncation length that the callable behind ``name`` gave, checked (below 2 becomes 2)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not 1 <= value < math.inf:
        raise ConfigError(f"{name}: gave {value!r}; an unroll length must be a number >= 1")
    return max(2, int(value))


def check_unroll_distribution(name, value):
    def check_length_distribution(value):
        fixed = isinstance(value, int) and not isinstance(value, bool) and value >= 2
        geometric = isinstance(value, float) and 0.0 < value < 1.0
        if not (fixed or geometric):
            raise ConfigError(f"{name}: an int >= 2 (fixed length), a float in (0, 1) "
                              f"(geometric with that p) or a callable, got {value!r}")

    import_names.callable_or_checked(name, value, check_length_distribution)

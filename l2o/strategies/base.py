"""What every strategy shares: the schedule's options, a period's training and validation.

A strategy is the meta-training schedule (how many periods, which unroll
lengths, when to stop); the run directory it trains in
(``l2o.run_directory.RunDirectory``) owns resume, logs and checkpoint order.
"""

import inspect
import math
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from l2o import import_names
from l2o.run_directory import RunDirectory
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
        metrics.update(self.trainer.validation_metrics(self.options["validation_unroll"],
                                             self.options["validation_seed"],
                                             self.options["validation_repeat"]))
        return metrics

    def start(self, trainer, directory):
        """Takes up the run of ``trainer`` in ``directory``: restores its newest intact
        checkpoint if any, writes the config, and opens the logs."""
        self.trainer = trainer
        self.run_directory = RunDirectory(directory, trainer.config)
        self.state = self.run_directory.resume(trainer.load_state_arrays) or {
            "period": -1, "best_validation": float("inf")}
        self.run_directory.save_config()
        self.run_directory.open_logs(self.state["period"])

    def run(self, trainer, directory):
        """Trains in ``directory``, resuming after its last finished period if any.

        Returns the run's state, with ``periods_trained`` (by this call) and, where that
        is none (a finished run resumed), ``extend_with``: the override that extends it.
        """
        self.start(trainer, directory)
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
        self.run_directory.record_period(period, self.trainer.meta_weights(), metrics, improved,
                                         self.state, self.trainer.state_arrays)
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

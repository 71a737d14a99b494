"""The Curriculum strategy: stages of growing unroll length.

Stage i trains with truncations of ``schedule[i]`` steps (a list),
``base * power**i`` (``{base: 50, power: 2}``), or ``schedule(i)`` (a callable,
or its import name). Within a stage, periods run as in the Simple strategy,
each followed by validation at the fixed horizon ``validation_unroll``. The
exact rules:

- A period improves its stage if its validation meta-loss is below the best
  of the stage so far.
- A stage ends after a period that did not improve it, once it has run at
  least ``min_periods`` periods, or after ``max_periods`` periods (null: no
  limit, as in the l2o toolkit).
- A stage improved the run if its best validation meta-loss is below the best
  before the stage began.
- After a stage ends, the run stops if a list schedule has no next entry
  (a list limits the stages to its length, as in the l2o toolkit), if
  ``max_stages`` > 0 stages have run, or if ``max_stages`` = 0 and the stage
  did not improve the run. Otherwise the meta-weights go back to the best
  checkpoint and the next stage begins.

All of this is kept in the strategy state saved with every checkpoint, so a
run resumed mid-stage continues exactly where it stopped.
"""

import numpy as np

from l2o import import_names
from l2o.registry import STRATEGIES
from l2o.strategies.base import Strategy, unroll_length
from l2o.validation import ConfigError


@STRATEGIES.register("Curriculum", aliases=("CurriculumLearning",))
class CurriculumStrategy(Strategy):
    """The defaults are the l2o toolkit's (``min_periods`` 10, no ``max_periods``)."""

    def __init__(self, schedule=None, min_periods=10, max_periods=None, max_stages=0,
                 **options):
        super().__init__(schedule=schedule or {"base": 50, "power": 2}, min_periods=min_periods,
                         max_periods=max_periods, max_stages=max_stages, **options)

    @classmethod
    def validate_config(cls, strategy):
        super().validate_config(strategy)
        schedule = strategy["schedule"]
        if schedule is None:
            strategy["schedule"] = schedule = {"base": 50, "power": 2}
        # A callable's lengths are checked as it gives them.
        import_names.callable_or_checked("strategy/schedule", schedule, check_schedule)
        maximum = strategy["max_periods"]
        if maximum is not None and (isinstance(maximum, bool) or not isinstance(maximum, int)
                                    or maximum < 1):
            raise ConfigError(f"strategy/max_periods: must be null (no limit) or a positive "
                              f"int, got {maximum!r}")
        minimum = strategy["min_periods"]
        if minimum < 1 or (maximum is not None and minimum > maximum):
            raise ConfigError(f"strategy/min_periods: must be between 1 and max_periods "
                              f"({maximum}), got {strategy['min_periods']}")
        if strategy["max_stages"] < 0:
            raise ConfigError(f"strategy/max_stages: must be >= 0, got {strategy['max_stages']}")

    def unroll_length(self, stage):
        """The stage's truncation length, or None past the end of a list schedule."""
        schedule = import_names.loaded("strategy/schedule", self.options["schedule"])
        if callable(schedule):
            return unroll_length("strategy/schedule", schedule(stage))
        if isinstance(schedule, list):
            return schedule[stage] if stage < len(schedule) else None
        return round(schedule["base"] * schedule["power"] ** stage)

    def run_periods(self):
        self.state.setdefault("curriculum", {"stage": 0, "periods": 0, "stage_best": np.inf,
                                             "best_before": np.inf, "finished": False})
        while True:
            if self.state["curriculum"]["finished"]:
                if self.should_stop(self.state["curriculum"]):
                    return
                self.next_stage(self.state["curriculum"])
            progress = self.state["curriculum"]
            length = self.unroll_length(progress["stage"])
            period = self.state["period"] + 1
            metrics = self.period_metrics(period, lambda generator, n=length: n)
            metrics.update(stage=progress["stage"], unroll=length)
            self.state["curriculum"] = stage_after(progress, metrics["validation_meta_loss"],
                                                   self.options)
            self.finish_period(period, metrics)

    def extension(self):
        stages_done = self.state.get("curriculum", {"stage": 0})["stage"] + 1
        if self.unroll_length(stages_done) is None:
            return "strategy/schedule=[...] (a longer list of unroll lengths)"
        return f"strategy/max_stages={stages_done + 1}"

    def should_stop(self, progress):
        stages_done, max_stages = progress["stage"] + 1, self.options["max_stages"]
        # The stage limit first: a schedule is not asked for a stage that will not run.
        if 0 < max_stages <= stages_done or self.unroll_length(stages_done) is None:
            return True
        return max_stages == 0 and not progress["stage_best"] < progress["best_before"]

    def next_stage(self, progress):
        for name, value in self.run_directory.best_meta_weights().items():
            self.trainer.meta_variables[name].assign(value)
        self.state["curriculum"] = {
            "stage": progress["stage"] + 1, "periods": 0, "stage_best": np.inf,
            "best_before": min(progress["best_before"], progress["stage_best"]),
            "finished": False}


def stage_after(progress, validation, options):
    """The curriculum progress after a period with this validation meta-loss (pure)."""
    improved = validation < progress["stage_best"]
    periods = progress["periods"] + 1
    maximum = options["max_periods"]
    finished = (maximum is not None and periods >= maximum) or (
        periods >= options["min_periods"] and not improved)
    return dict(progress, periods=periods, finished=finished,
                stage_best=min(progress["stage_best"], validation))


def check_schedule(schedule):
    valid_list = isinstance(schedule, list) and schedule and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 2 for n in schedule)
    valid_growth = isinstance(schedule, dict) and set(schedule) == {"base", "power"} and \
        isinstance(schedule["base"], int) and schedule["base"] >= 2 and \
        isinstance(schedule["power"], (int, float)) and schedule["power"] >= 1
    if not (valid_list or valid_growth):
        raise ConfigError(f"strategy/schedule: a list of unroll lengths >= 2, "
                          f"{{base: int >= 2, power: >= 1}} or a callable, got {schedule!r}")

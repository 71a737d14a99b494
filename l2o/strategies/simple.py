"""The Simple strategy: fixed periods, validation and a checkpoint after each."""

from l2o.config import ConfigError
from l2o.strategies.base import Strategy, check_unroll_distribution, unroll_sampler


class SimpleStrategy(Strategy):
    """``num_periods`` periods of ``epochs_per_period`` epochs.

    Truncation lengths follow ``unroll_distribution`` (int: fixed; float p:
    geometric with mean 1/p). After each period the optimiser is validated on
    ``validation_repeat`` fresh runs per problem of ``validation_unroll`` steps
    from seeds ``validation_seed``, ``validation_seed + 1``, ...
    """

    def __init__(self, num_periods=10, epochs_per_period=10, unroll_distribution=20,
                 validation_unroll=50, validation_seed=12345, validation_repeat=2):
        super().__init__(**{k: v for k, v in locals().items() if k != "self"})

    @classmethod
    def validate_config(cls, strategy):
        for key in ("num_periods", "epochs_per_period", "validation_unroll",
                    "validation_repeat"):
            if strategy[key] < 1:
                raise ConfigError(f"strategy/{key}: must be at least 1, got {strategy[key]}")
        check_unroll_distribution("strategy/unroll_distribution",
                                  strategy["unroll_distribution"])

    def run_periods(self):
        options, sample = self.options, unroll_sampler(self.options["unroll_distribution"])
        for period in range(self.state["period"] + 1, options["num_periods"]):
            meta_loss, steps_per_second = self.train_period(period, sample)
            metrics = {"train_meta_loss": meta_loss, "inner_steps_per_second": steps_per_second}
            metrics.update(self.trainer.validate(options["validation_unroll"],
                                                 options["validation_seed"],
                                                 options["validation_repeat"]))
            self.finish_period(period, metrics)

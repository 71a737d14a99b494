"""The Simple strategy: fixed periods, validation and a checkpoint after each."""

from l2o.registry import STRATEGIES
from l2o.strategies.base import Strategy, check_unroll_distribution, unroll_sampler
from l2o.validation import ConfigError


@STRATEGIES.register("Simple")
class SimpleStrategy(Strategy):
    """``num_periods`` periods of ``epochs_per_period`` epochs.

    Truncation lengths follow ``unroll_distribution`` (int: fixed; float p:
    geometric with mean 1/p; a callable: see ``unroll_sampler``). Validation
    and the other options: ``Strategy``. The defaults are the l2o toolkit's.
    """

    def __init__(self, num_periods=100, unroll_distribution=0.05, **options):
        super().__init__(num_periods=num_periods, unroll_distribution=unroll_distribution,
                         **options)

    @classmethod
    def validate_config(cls, strategy):
        super().validate_config(strategy)
        if strategy["num_periods"] < 1:
            raise ConfigError(f"strategy/num_periods: must be at least 1, "
                              f"got {strategy['num_periods']}")
        check_unroll_distribution("strategy/unroll_distribution",
                                  strategy["unroll_distribution"])

    def extension(self):
        done = max(self.options["num_periods"], self.state["period"] + 1)
        return f"strategy/num_periods={2 * done}"

    def run_periods(self):
        sample = unroll_sampler(self.options["unroll_distribution"])
        for period in range(self.state["period"] + 1, self.options["num_periods"]):
            self.finish_period(period, self.period_metrics(period, sample))

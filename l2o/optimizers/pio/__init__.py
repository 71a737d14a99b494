"""PIO, the Path Integral Optimiser: rule (equations), SDE solver, Keras optimiser, trainer."""

from l2o.optimizers.pio.optimizer import PIOOptimizer, attach
from l2o.optimizers.pio.rule import PIORule, fit_sampler, log_normaliser_estimates

__all__ = ["PIOOptimizer", "PIORule", "attach", "fit_sampler", "log_normaliser_estimates"]

"""Meta-gradient estimators: how a truncation of inner training becomes a meta-gradient.

Every estimator implements ``GradientEstimator`` (``l2o.estimators.base``).
``TBPTT`` differentiates through a truncation of a learned optimiser's unroll;
``ParticleEstimator`` runs truncated ES or Persistent ES (``TruncatedES``,
``PES``: the population arithmetic) over vectorised perturbed truncations.
``FamilyEstimator`` serves a task family, one member's estimator per trajectory.
"""

from l2o import import_names
from l2o.estimators.base import GradientEstimate, GradientEstimator
from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.family import FamilyEstimator, FamilyWorker
from l2o.estimators.particles import ParticleEstimator
from l2o.estimators.tbptt import TBPTT, Trajectory


def learned_rule_estimator(rule, problem, meta_variables, config, jit_compile):
    """The estimator ``training/estimator`` names, for a learned update rule on ``problem``.

    A problem of several member tasks (a task family) gets one estimator per
    member, each compiled on its own, behind a ``FamilyEstimator``.
    """
    members = problem.members()
    if len(members) > 1:
        return FamilyEstimator(problem, [
            learned_rule_estimator(rule, member, meta_variables, config, jit_compile)
            for member in members])
    problem = members[0]
    training = config["training"]
    weights = import_names.loaded("training/unroll_weights", training["unroll_weights"])
    tbptt = TBPTT(rule, problem, meta_variables, config["loss_args"], weights,
                  training["second_order"], jit_compile, training["parameter_scale_spread"],
                  training["meta_objective"])
    if training["estimator"] == "tbptt":
        return tbptt
    return ParticleEstimator(training["estimator"], tbptt, sigma=training["sigma"],
                             n_particles=training["n_particles"], horizon=training["horizon"],
                             stagger=training["stagger"])


__all__ = [
    "PES",
    "TBPTT",
    "FamilyEstimator",
    "FamilyWorker",
    "GradientEstimate",
    "GradientEstimator",
    "ParticleEstimator",
    "Trajectory",
    "TruncatedES",
    "learned_rule_estimator",
]

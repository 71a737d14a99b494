"""Meta-gradient estimators: how a truncation of inner training becomes a meta-gradient.

Every estimator implements ``GradientEstimator`` (``l2o.estimators.base``).
``TBPTT`` differentiates through a truncation of a learned optimiser's unroll;
``ParticleEstimator`` runs truncated ES or Persistent ES (``TruncatedES``,
``PES``: the population arithmetic) over vectorised perturbed truncations.
``FamilyEstimator`` serves a task family, one member's estimator per trajectory.
A config chooses one by ``estimator_constructor`` (``ESTIMATORS``: ``tbptt``, ``es``,
``pes``), whose ``EstimatorSpec`` takes the ``estimator:`` section and builds it.
"""

from l2o import import_names
from l2o.estimators.base import EstimatorSpec, GradientEstimate, GradientEstimator
from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.family import FamilyEstimator, FamilyWorker
from l2o.estimators.particles import ParticleEstimator, PESSpec, TruncatedESSpec
from l2o.estimators.tbptt import TBPTT, TBPTTSpec, Trajectory
from l2o.registry import ESTIMATORS


def learned_rule_estimator(rule, problem, meta_variables, config, jit_compile):
    """The estimator ``estimator_constructor`` names, for a learned update rule on ``problem``.

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
                  training["meta_objective"], training["floor_weight"],
                  training["floor_learning_rate"])
    return ESTIMATORS[config["estimator_constructor"]](**config["estimator"]).build(tbptt)


__all__ = [
    "ESTIMATORS",
    "PES",
    "TBPTT",
    "EstimatorSpec",
    "FamilyEstimator",
    "FamilyWorker",
    "GradientEstimate",
    "GradientEstimator",
    "PESSpec",
    "ParticleEstimator",
    "TBPTTSpec",
    "Trajectory",
    "TruncatedES",
    "TruncatedESSpec",
    "learned_rule_estimator",
]

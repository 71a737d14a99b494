"""Truncated backpropagation through time (TBPTT).

The meta-gradient of one truncation is the exact gradient of its meta-loss
(see ``l2o.estimators.unroll``) with respect to the meta-weights, backpropagated
through the K inner steps and the inner gradients themselves (``second_order``;
off, the inner gradients are treated as constants as in Andrychowicz et al.).
Parameters and optimiser state then carry over to the next truncation, which
is where the bias comes from: the influence of the meta-weights on the state at
the start of a truncation is ignored.

A worker state is a ``Trajectory``: one inner training run in progress.
"""

import dataclasses

import numpy as np
from keras import ops

from l2o import backend, tree
from l2o.estimators.base import EstimatorSpec, GradientEstimate, GradientEstimator
from l2o.estimators.unroll import (
    MetaObjective,
    exploded,
    meta_loss,
    objective_needs,
    reference_init,
    unroll,
)
from l2o.registry import ESTIMATORS
from l2o.streams import Stream, rng
from l2o.validation import ConfigError


@dataclasses.dataclass
class Trajectory:
    """One inner training run in progress.

    ``scales`` (one tensor per parameter, or None) make its loss f(scales * theta):
    the random scaling of Lv et al., ``training/parameter_scale_spread``.
    """

    seed: int
    params: list
    state: object
    initial_loss: object
    scales: list = None
    step: int = 0


class TBPTT(GradientEstimator):
    """Meta-gradients and plain unrolls of one problem, compiled once.

    ``parameter_scale_spread`` s > 0 makes each training trajectory's loss
    f(c * theta) with c = exp(U(-s, s)) per coordinate (validation runs are
    never scaled). ``meta_objective`` names what the meta-loss scores
    (``l2o.estimators.unroll``); a trajectory's ``initial_loss`` is f_0 on
    the data it scores. The floor (``floor_weight``, ``floor_learning_rate``) is the
    particle estimators' (``l2o.estimators.particles``), whose validation is TBPTT's
    ``evaluate``: it scores the floor too, its reference starting with the run.
    """

    def __init__(self, rule, problem, meta_variables, loss_args, unroll_weights,
                 second_order=True, jit_compile=False, parameter_scale_spread=0.0,
                 meta_objective="train_sum_loss", floor_weight=0.0, floor_learning_rate=1e-3):
        self.rule, self.problem = rule, problem
        self.meta_variables = meta_variables
        self.parameter_scale_spread = parameter_scale_spread
        self.loss_args, self.unroll_weights = loss_args, unroll_weights
        self.objective = objective = MetaObjective(meta_objective, problem, floor_weight,
                                                   floor_learning_rate)
        variables = list(meta_variables.values())

        def meta_weights():
            return {name: ops.convert_to_tensor(v) for name, v in self.meta_variables.items()}

        def scored_unroll(params, state, batches, initial_loss, scales=None, held_out=(),
                          reference=None):
            params, state, losses, scores, *floor = unroll(
                rule, problem, meta_weights(), params, state, batches, second_order, scales,
                objective=objective, held_out=held_out, reference=reference)
            value = meta_loss(scores, initial_loss, loss_args, unroll_weights, objective.name,
                              floor[1] if floor else None, objective.floor_weight)
            return value, (params, state, losses, exploded(scores, initial_loss, loss_args))

        def imitation_unroll(params, state, batches, targets, scales=None):
            params, state, _, distances = unroll(rule, problem, meta_weights(), params, state,
                                                 batches, second_order, scales, targets)
            return ops.mean(distances), (params, state)

        def estimate(params, state, batches, initial_loss, scales=None, held_out=()):
            (value, (params, state, losses, blew_up)), grads = backend.value_and_grad(
                scored_unroll, variables)(params, state, batches, initial_loss, scales, held_out)
            return value, grads, tree.all_finite([value, *grads]), params, state, losses, blew_up

        def imitate(params, state, batches, targets, scales=None):
            (value, (params, state)), grads = backend.value_and_grad(
                imitation_unroll, variables)(params, state, batches, targets, scales)
            return value, grads, tree.all_finite([value, *grads]), params, state

        def evaluate(params, state, batches, initial_loss, held_out=()):
            # A fresh run: the floor's reference starts with it.
            reference = (params, reference_init(params)) if objective.floor_weight > 0 else None
            value, (params, state, losses, blew_up) = scored_unroll(
                params, state, batches, initial_loss, held_out=held_out, reference=reference)
            return value, params, state, losses, blew_up

        self.estimate, self.imitate, self.evaluate = (
            backend.compile_fn(fn, jit_compile, relax_leading_dim=True, variables=variables)
            for fn in (estimate, imitate, evaluate))
        self.initial_loss = backend.compile_fn(problem.loss, jit_compile)
        self._traceable_estimate, self._jit_compile = estimate, jit_compile
        self.estimate_and_update = None

    def fuse_meta_update(self, update, variables):
        """The truncation, its meta-gradient and the guarded meta-update: one compiled call."""
        estimate = self._traceable_estimate

        def estimate_and_update(*args):
            outputs = estimate(*args)
            _, grads, usable, *_ = outputs
            update(grads, usable)
            return outputs

        self.estimate_and_update = backend.compile_fn(
            estimate_and_update, self._jit_compile, relax_leading_dim=True, variables=variables)
        return True

    # ------------------------------------------------------------------ trajectories

    def scales(self, seed):
        """exp(U(-s, s)) per coordinate for ``parameter_scale_spread`` s > 0, else None."""
        spread = self.parameter_scale_spread
        if spread <= 0:
            return None
        generator = rng(Stream.PARAMETER_SCALES, seed)
        return [ops.convert_to_tensor(np.exp(generator.uniform(-spread, spread, p.shape))
                                      .astype(np.float32))
                for p in self.problem.init(seed)]

    def new_trajectory(self, seed, scaled=False):
        """A fresh trajectory; ``scaled`` applies ``parameter_scale_spread`` (training only)."""
        scales = self.scales(seed) if scaled else None
        # Starting from theta_0 / scales keeps the scaled problem's starting point f(theta_0).
        initial = [ops.convert_to_tensor(p) for p in self.problem.init(seed)]
        params = initial if scales is None else [p / s for p, s in zip(initial, scales)]
        first = self.objective.held_out(seed, 0, 1) if self.objective.on_validation \
            else self.problem.batches(seed, 0, 1)
        first_batch = tuple(ops.convert_to_tensor(b[0]) for b in first)
        return Trajectory(seed=seed, params=params, state=self.rule.init_state(params, seed),
                          initial_loss=self.initial_loss(initial, first_batch), scales=scales)

    def held_out(self, trajectory, length):
        """The validation minibatches that the next ``length`` steps of ``trajectory`` score."""
        return self.objective.held_out(trajectory.seed, trajectory.step + 1, length)

    # ------------------------------------------------------------------ GradientEstimator

    def init_worker_state(self, seed):
        return self.new_trajectory(seed, scaled=True)

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None,
                                  update=False):
        trajectory = worker_state
        batches = self.problem.batches(trajectory.seed, trajectory.step, length)
        if teacher is not None:
            targets = teacher.targets(scaled_params(trajectory), batches)
            value, grads, usable, params, state = self.imitate(
                trajectory.params, trajectory.state, batches,
                unscaled_targets(trajectory, targets), trajectory.scales)
            blew_up, kind = False, "imitation_loss"
        else:
            value, grads, usable, params, state, _, blew_up = \
                (self.estimate_and_update if update else self.estimate)(
                trajectory.params, trajectory.state, batches, trajectory.initial_loss,
                trajectory.scales, self.held_out(trajectory, length))
            kind = "meta_loss"
        usable = bool(usable)
        advanced = dataclasses.replace(trajectory, params=params, state=state,
                                       step=trajectory.step + length)
        return GradientEstimate(loss=float(value), grads=grads, usable=usable, steps=length,
                                restart=bool(blew_up) or not usable, kind=kind,
                                applied=update), advanced

    def validation_metrics(self, unroll, seed):
        trajectory = self.new_trajectory(seed)
        batches = self.problem.batches(trajectory.seed, 0, unroll)
        value, _, _, losses, _ = self.evaluate(trajectory.params, trajectory.state, batches,
                                               trajectory.initial_loss,
                                               self.held_out(trajectory, unroll))
        return {"validation_meta_loss": float(value),
                "validation_final_loss": float(losses[-1])}

    def worker_arrays(self, worker_state):
        trajectory = worker_state
        return ({**tree.to_arrays("params", trajectory.params),
                 **tree.to_arrays("state", trajectory.state),
                 "initial_loss": np.asarray(trajectory.initial_loss)},
                {"seed": trajectory.seed, "step": trajectory.step})

    def load_worker_state(self, arrays, info):
        template = self.new_trajectory(info["seed"], scaled=True)
        return dataclasses.replace(
            template, step=info["step"], params=tree.from_arrays("params", arrays, template.params),
            state=tree.from_arrays("state", arrays, template.state),
            initial_loss=ops.convert_to_tensor(arrays["initial_loss"]))


@ESTIMATORS.register("tbptt")
class TBPTTSpec(EstimatorSpec):
    """``estimator_constructor: tbptt``: the gradient of each truncation backpropagated through
    its inner steps (``TBPTT``); no options."""

    differentiates = True

    @classmethod
    def validate_config(cls, estimator, config):
        objective = config["training"]["meta_objective"]
        if config["training"]["floor_weight"] > 0:
            raise ConfigError(f"training/floor_weight: the floor's reference run is carried by "
                              f"the particle estimators; use estimator_constructor es or pes, "
                              f"or floor_weight 0, got {config['training']['floor_weight']}")
        if "accuracy" in objective_needs(objective):
            raise ConfigError(f"training/meta_objective: {objective} scores accuracy, which has "
                              f"no gradient to backpropagate; use estimator_constructor es or "
                              f"pes")

    def build(self, tbptt):
        return tbptt


def scaled_params(trajectory):
    """The parameters the problem sees: scales * theta."""
    if trajectory.scales is None:
        return trajectory.params
    return [s * p for s, p in zip(trajectory.scales, trajectory.params)]


def unscaled_targets(trajectory, targets):
    """Teacher targets (in the problem's coordinates) in the trajectory's coordinates."""
    if trajectory.scales is None:
        return targets
    return [t / ops.convert_to_numpy(s)[None] for t, s in zip(targets, trajectory.scales)]

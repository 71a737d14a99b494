"""Meta-training state and the work of one strategy epoch.

``MetaTrainer`` owns the meta-weights, the meta-optimiser, one estimator per
problem and (with ``training/persistent``) the inner trajectories that live
across epochs. Strategies decide how many epochs to run, with which unroll
lengths, and when to validate and checkpoint.

With ``training/estimator`` = ``es`` or ``pes`` a trajectory slot holds a
*population* of ``n_particles`` perturbed inner runs (``TruncatedES`` or
``PES`` over ``ParticleTruncations``) instead of one differentiated run; it
lives, like a trajectory, for one strategy epoch unless ``persistent``, and
restarts when its estimate is not finite. TBPTT still scores validation.

Every random choice is drawn from a generator keyed by (seed, period, epoch,
problem, trajectory, truncation), so a resumed run repeats exactly what an
uninterrupted one would have done.
"""

import copy
import dataclasses

import keras
import numpy as np
from keras import ops

from l2o import backend, checkpoints, problems
from l2o.estimators import PES, TBPTT, TruncatedES
from l2o.estimators.particles import ParticleTruncations
from l2o.imitation import Teacher
from l2o.optimizers import RULE_CONSTRUCTORS
from l2o.problems.base import rng
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


def resolve_jit(setting):
    return backend.accelerator_available() if setting == "auto" else bool(setting)


class MetaTrainer:
    def __init__(self, config):
        self.config = config
        training = config["training"]
        self.rule = RULE_CONSTRUCTORS[config["constructor"]].rule_class(**config["network"])
        self.problems = [problems.build(spec, f"problems/{index}")
                         for index, spec in enumerate(config["problems"])]
        for index, problem in enumerate(self.problems):
            try:  # a rule that cannot serve a problem (too many groups) says so now
                self.rule.init_state([ops.convert_to_tensor(p)
                                      for p in problem.init(training["seed"])], training["seed"])
            except ValueError as error:
                raise ConfigError(f"{error} (problems/{index})") from None
        self.meta_variables = {
            name: keras.Variable(value, name=name.replace("/", "_"))
            for name, value in self.rule.init_meta_weights(training["seed"]).items()}
        self.meta_optimizer = keras.optimizers.get(copy.deepcopy(config["optimizer"]))
        self.meta_optimizer.build(list(self.meta_variables.values()))
        # Compiled: an eager Keras apply costs several milliseconds per truncation.
        self._apply_meta_gradients = backend.compile_fn(
            lambda grads: self.meta_optimizer.apply(grads, list(self.meta_variables.values())))
        self.imitation_optimizer = self.meta_optimizer
        if training["imitation_optimizer"] is not None:
            self.imitation_optimizer = keras.optimizers.get(
                copy.deepcopy(training["imitation_optimizer"]))
            self.imitation_optimizer.build(list(self.meta_variables.values()))
        self._apply_imitation_gradients = self._apply_meta_gradients \
            if training["imitation_optimizer"] is None else backend.compile_fn(
                lambda grads: self.imitation_optimizer.apply(
                    grads, list(self.meta_variables.values())))
        self.teachers = [[Teacher(spec, problem) for spec in training["teachers"]]
                         for problem in self.problems]
        jit_compile = resolve_jit(training["jit_compile"])
        self.estimators = [
            TBPTT(self.rule, problem, self.meta_variables, config["loss_args"],
                  training["unroll_weights"], training["second_order"], jit_compile)
            for problem in self.problems]
        self.trajectories = {}
        self.particle_truncations = [] if training["estimator"] == "tbptt" else [
            ParticleTruncations(
                self.rule, problem, self.meta_weights(),
                lambda seed, index=index: self.new_trajectory(index, seed),
                config["loss_args"], training["unroll_weights"], jit_compile)
            for index, problem in enumerate(self.problems)]
        self.populations = {}

    # ------------------------------------------------------------------ trajectories

    def scales(self, problem_index, seed):
        """exp(U(-s, s)) per coordinate for ``parameter_scale_spread`` s > 0, else None."""
        spread = self.config["training"]["parameter_scale_spread"]
        if spread <= 0:
            return None
        generator = rng(seed, 2)
        return [ops.convert_to_tensor(np.exp(generator.uniform(-spread, spread, p.shape))
                                      .astype(np.float32))
                for p in self.problems[problem_index].init(seed)]

    def new_trajectory(self, problem_index, seed, scaled=False):
        """A fresh trajectory; ``scaled`` applies ``parameter_scale_spread`` (training only)."""
        problem = self.problems[problem_index]
        scales = self.scales(problem_index, seed) if scaled else None
        # Starting from theta_0 / scales keeps the scaled problem's starting point f(theta_0).
        initial = [ops.convert_to_tensor(p) for p in problem.init(seed)]
        params = initial if scales is None else [p / s for p, s in zip(initial, scales)]
        first_batch = tuple(ops.convert_to_tensor(b[0]) for b in problem.batches(seed, 0, 1))
        return Trajectory(seed=seed, params=params, state=self.rule.init_state(params, seed),
                          initial_loss=self.estimators[problem_index].initial_loss(
                              initial, first_batch),
                          scales=scales)

    def _trajectory(self, keys, problem_index, slot):
        if self.config["training"]["persistent"] and (problem_index, slot) in self.trajectories:
            return self.trajectories[(problem_index, slot)]
        return self.new_trajectory(problem_index, int(rng(*keys).integers(2 ** 31)), scaled=True)

    # ------------------------------------------------------------------ training

    def train_epoch(self, period, epoch, sample_unroll, imitation_probability=0.0,
                    on_truncation=lambda **_: None):
        """One strategy epoch over every problem.

        ``sample_unroll(generator)`` draws each truncation's length; with
        probability ``imitation_probability`` a truncation imitates a teacher
        (drawn uniformly) instead of lowering the meta-loss.
        ``on_truncation(meta_loss=..., steps=...)`` is called after each one.
        Returns ``{"meta_loss": [...], "imitation_loss": [...]}`` of the applied updates.
        """
        if self.particle_truncations:
            return self._train_particles_epoch(period, epoch, sample_unroll, on_truncation)
        training, seed = self.config["training"], self.config["training"]["seed"]
        losses = {"meta_loss": [], "imitation_loss": []}
        for problem_index, (problem, estimator) in enumerate(zip(self.problems, self.estimators)):
            for slot in range(training["epochs"]):
                keys = (seed, period, epoch, problem_index, slot)
                trajectory = self._trajectory(keys, problem_index, slot)
                for depth in range(training["depth"]):
                    generator = rng(*keys, depth)
                    length = sample_unroll(generator)
                    imitating = generator.uniform() < imitation_probability
                    teacher = self.teachers[problem_index][
                        int(generator.integers(len(self.teachers[problem_index])))] \
                        if imitating else None
                    batches = problem.batches(trajectory.seed, trajectory.step, length)
                    exploded = False
                    for _ in range(training["repeat"]):
                        if imitating:
                            targets = teacher.targets(self._scaled(trajectory), batches)
                            value, grads, usable, params, state = estimator.imitate(
                                trajectory.params, trajectory.state, batches,
                                self._unscaled(trajectory, targets), trajectory.scales)
                            apply, kind = self._apply_imitation_gradients, "imitation_loss"
                        else:
                            value, grads, usable, params, state, _, exploded = \
                                estimator.estimate(trajectory.params, trajectory.state,
                                                   batches, trajectory.initial_loss,
                                                   trajectory.scales)
                            apply, kind = self._apply_meta_gradients, "meta_loss"
                        usable = bool(usable)
                        if usable:
                            apply(grads)
                            losses[kind].append(float(value))
                    on_truncation(meta_loss=float(value), steps=length)
                    if bool(exploded) or not usable:
                        trajectory = self.new_trajectory(
                            problem_index, int(rng(*keys, depth, 1).integers(2 ** 31)),
                            scaled=True)
                        continue
                    trajectory.params, trajectory.state = params, state
                    trajectory.step += length
                if training["persistent"]:
                    self.trajectories[(problem_index, slot)] = trajectory
        return losses

    def new_population(self, problem_index):
        training = self.config["training"]
        truncations = self.particle_truncations[problem_index]
        options = {"sigma": training["sigma"], "n_particles": training["n_particles"],
                   "horizon": training["horizon"]}
        if training["estimator"] == "es":
            return TruncatedES(truncations.unroll, truncations.init_state, **options)
        return PES(truncations.unroll, truncations.init_state, stagger=training["stagger"],
                   **options)

    def _train_particles_epoch(self, period, epoch, sample_unroll, on_truncation):
        """``train_epoch`` for ES and PES: each truncation perturbs, unrolls, estimates, applies."""
        training, seed = self.config["training"], self.config["training"]["seed"]
        losses = {"meta_loss": [], "imitation_loss": []}
        variables = list(self.meta_variables.values())
        for problem_index, truncations in enumerate(self.particle_truncations):
            for slot in range(training["epochs"]):
                keys = (seed, period, epoch, problem_index, slot)
                population = self.populations.get((problem_index, slot)) \
                    if training["persistent"] else None
                population = population or self.new_population(problem_index)
                for depth in range(training["depth"]):
                    generator = rng(*keys, depth)
                    length = sample_unroll(generator)
                    gradient, value = population.estimate(
                        truncations.flatten(self.meta_weights()), generator, length)
                    if np.all(np.isfinite(gradient)) and np.isfinite(value):
                        self._apply_meta_gradients([
                            ops.convert_to_tensor(g, v.dtype)
                            for g, v in zip(truncations.unflatten(gradient), variables)])
                        losses["meta_loss"].append(value)
                    else:
                        population = self.new_population(problem_index)
                    on_truncation(meta_loss=value, steps=length)
                if training["persistent"]:
                    self.populations[(problem_index, slot)] = population
        return losses

    @staticmethod
    def _scaled(trajectory):
        """The parameters the problem sees: scales * theta."""
        if trajectory.scales is None:
            return trajectory.params
        return [s * p for s, p in zip(trajectory.scales, trajectory.params)]

    @staticmethod
    def _unscaled(trajectory, targets):
        """Teacher targets (in the problem's coordinates) in the trajectory's coordinates."""
        if trajectory.scales is None:
            return targets
        return [t / ops.convert_to_numpy(s)[None] for t, s in zip(targets, trajectory.scales)]

    def validate(self, unroll, seed, repeat):
        """Meta-loss and final inner loss of ``unroll``-step runs from fixed seeds."""
        meta_losses, final_losses = [], []
        for problem_index, estimator in enumerate(self.estimators):
            for offset in range(repeat):
                trajectory = self.new_trajectory(problem_index, seed + offset)
                batches = self.problems[problem_index].batches(trajectory.seed, 0, unroll)
                meta_loss, _, _, losses, _ = estimator.evaluate(
                    trajectory.params, trajectory.state, batches, trajectory.initial_loss)
                meta_losses.append(float(meta_loss))
                final_losses.append(float(losses[-1]))
        return {"validation_meta_loss": float(np.mean(meta_losses)),
                "validation_final_loss": float(np.mean(final_losses))}

    # ------------------------------------------------------------------ checkpoints

    def meta_weights(self):
        return {name: np.asarray(v.numpy()) for name, v in self.meta_variables.items()}

    def state_arrays(self):
        """Everything a resumed run needs, as named numpy arrays, plus JSON info."""
        arrays = {**checkpoints.variable_arrays("meta", self.meta_variables),
                  **checkpoints.variable_arrays("meta_optimizer", self.meta_optimizer.variables)}
        if self.imitation_optimizer is not self.meta_optimizer:
            arrays.update(checkpoints.variable_arrays("imitation_optimizer",
                                                      self.imitation_optimizer.variables))
        trajectories = []
        for (problem_index, slot), trajectory in sorted(self.trajectories.items()):
            key = f"trajectory/{problem_index}_{slot}"
            for k, tensor in enumerate(trajectory.params + keras.tree.flatten(trajectory.state)):
                arrays[f"{key}/{k}"] = np.asarray(tensor)
            arrays[f"{key}/initial_loss"] = np.asarray(trajectory.initial_loss)
            trajectories.append({"problem": problem_index, "slot": slot,
                                 "seed": trajectory.seed, "step": trajectory.step})
        for (problem_index, slot), population in sorted(self.populations.items()):
            for name, value in population.arrays().items():
                arrays[f"population/{problem_index}_{slot}/{name}"] = value
        return arrays, {"trajectories": trajectories,
                        "populations": [[p, s] for p, s in sorted(self.populations)]}

    def load_state_arrays(self, arrays, info):
        checkpoints.assign_arrays("meta", self.meta_variables, arrays)
        checkpoints.assign_arrays("meta_optimizer", self.meta_optimizer.variables, arrays)
        if self.imitation_optimizer is not self.meta_optimizer:
            checkpoints.assign_arrays("imitation_optimizer", self.imitation_optimizer.variables,
                                      arrays)
        self.trajectories = {}
        for entry in info["trajectories"]:
            key = f"trajectory/{entry['problem']}_{entry['slot']}"
            count = len(self.problems[entry["problem"]].init(entry["seed"]))
            params = [ops.convert_to_tensor(arrays[f"{key}/{k}"]) for k in range(count)]
            structure = self.rule.init_state(params, entry["seed"])
            flat = [ops.convert_to_tensor(arrays[f"{key}/{count + k}"])
                    for k in range(len(keras.tree.flatten(structure)))]
            self.trajectories[(entry["problem"], entry["slot"])] = Trajectory(
                seed=entry["seed"], params=params,
                scales=self.scales(entry["problem"], entry["seed"]),
                state=keras.tree.pack_sequence_as(structure, flat),
                initial_loss=ops.convert_to_tensor(arrays[f"{key}/initial_loss"]),
                step=entry["step"])
        self.populations = {}
        for problem_index, slot in info.get("populations", []):
            prefix = f"population/{problem_index}_{slot}/"
            population = self.new_population(problem_index)
            template = self.particle_truncations[problem_index].init_state(rng(0))
            population.load_arrays({name[len(prefix):]: value for name, value in arrays.items()
                                    if name.startswith(prefix)}, template)
            self.populations[(problem_index, slot)] = population

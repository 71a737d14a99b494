"""Meta-training state and the work of one strategy epoch.

``MetaTrainer`` owns the meta-weights, the meta-optimiser, one estimator per
problem and (with ``training/persistent``) the inner trajectories that live
across epochs. Strategies decide how many epochs to run, with which unroll
lengths, and when to validate and checkpoint.

Every random choice is drawn from a generator keyed by (seed, period, epoch,
problem, trajectory, truncation), so a resumed run repeats exactly what an
uninterrupted one would have done.
"""

import copy
import dataclasses

import keras
import numpy as np
from keras import ops

from l2o import backend, problems
from l2o.estimators import TBPTT
from l2o.optimizers import CONSTRUCTORS
from l2o.problems.base import rng


@dataclasses.dataclass
class Trajectory:
    """One inner training run in progress."""

    seed: int
    params: list
    state: object
    initial_loss: object
    step: int = 0


def resolve_jit(setting):
    return backend.accelerator_available() if setting == "auto" else bool(setting)


class MetaTrainer:
    def __init__(self, config):
        self.config = config
        training = config["training"]
        self.rule = CONSTRUCTORS[config["constructor"]].rule_class(**config["network"])
        self.problems = [problems.build(spec, f"problems/{index}")
                         for index, spec in enumerate(config["problems"])]
        self.meta_variables = {
            name: keras.Variable(value, name=name.replace("/", "_"))
            for name, value in self.rule.init_meta_weights(training["seed"]).items()}
        self.meta_optimizer = keras.optimizers.get(copy.deepcopy(config["optimizer"]))
        self.meta_optimizer.build(list(self.meta_variables.values()))
        # Compiled: an eager Keras apply costs several milliseconds per truncation.
        self._apply_meta_gradients = backend.compile_fn(
            lambda grads: self.meta_optimizer.apply(grads, list(self.meta_variables.values())))
        jit_compile = resolve_jit(training["jit_compile"])
        self.estimators = [
            TBPTT(self.rule, problem, self.meta_variables, config["loss_args"],
                  training["unroll_weights"], training["second_order"], jit_compile)
            for problem in self.problems]
        self.trajectories = {}

    # ------------------------------------------------------------------ trajectories

    def new_trajectory(self, problem_index, seed):
        problem = self.problems[problem_index]
        params = [ops.convert_to_tensor(p) for p in problem.init(seed)]
        first_batch = [ops.convert_to_tensor(b[0]) for b in problem.batches(seed, 0, 1)]
        return Trajectory(seed=seed, params=params, state=self.rule.init_state(params, seed),
                          initial_loss=self.estimators[problem_index].initial_loss(
                              params, tuple(first_batch)))

    def _trajectory(self, keys, problem_index, slot):
        if self.config["training"]["persistent"] and (problem_index, slot) in self.trajectories:
            return self.trajectories[(problem_index, slot)]
        return self.new_trajectory(problem_index, int(rng(*keys).integers(2 ** 31)))

    # ------------------------------------------------------------------ training

    def train_epoch(self, period, epoch, sample_unroll, on_truncation=lambda **_: None):
        """One strategy epoch over every problem; returns the mean meta-loss.

        ``sample_unroll(generator)`` draws each truncation's length;
        ``on_truncation(meta_loss=..., steps=...)`` is called after each one.
        """
        training, seed = self.config["training"], self.config["training"]["seed"]
        meta_losses = []
        for problem_index, (problem, estimator) in enumerate(zip(self.problems, self.estimators)):
            for slot in range(training["epochs"]):
                keys = (seed, period, epoch, problem_index, slot)
                trajectory = self._trajectory(keys, problem_index, slot)
                for depth in range(training["depth"]):
                    length = sample_unroll(rng(*keys, depth))
                    batches = problem.batches(trajectory.seed, trajectory.step, length)
                    for _ in range(training["repeat"]):
                        meta_loss, grads, usable, params, state, _, exploded = \
                            estimator.estimate(trajectory.params, trajectory.state, batches,
                                               trajectory.initial_loss)
                        usable = bool(usable)
                        if usable:
                            self._apply_meta_gradients(grads)
                            meta_losses.append(float(meta_loss))
                    on_truncation(meta_loss=float(meta_loss), steps=length)
                    if bool(exploded) or not usable:
                        trajectory = self.new_trajectory(
                            problem_index, int(rng(*keys, depth, 1).integers(2 ** 31)))
                        continue
                    trajectory.params, trajectory.state = params, state
                    trajectory.step += length
                if training["persistent"]:
                    self.trajectories[(problem_index, slot)] = trajectory
        return float(np.mean(meta_losses)) if meta_losses else float("nan")

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
        arrays = {f"meta/{name}": value for name, value in self.meta_weights().items()}
        for index, variable in enumerate(self.meta_optimizer.variables):
            arrays[f"meta_optimizer/{index}"] = np.asarray(variable.numpy())
        trajectories = []
        for (problem_index, slot), trajectory in sorted(self.trajectories.items()):
            key = f"trajectory/{problem_index}_{slot}"
            for k, tensor in enumerate(trajectory.params + keras.tree.flatten(trajectory.state)):
                arrays[f"{key}/{k}"] = np.asarray(tensor)
            arrays[f"{key}/initial_loss"] = np.asarray(trajectory.initial_loss)
            trajectories.append({"problem": problem_index, "slot": slot,
                                 "seed": trajectory.seed, "step": trajectory.step})
        return arrays, {"trajectories": trajectories}

    def load_state_arrays(self, arrays, info):
        for name, variable in self.meta_variables.items():
            variable.assign(arrays[f"meta/{name}"])
        for index, variable in enumerate(self.meta_optimizer.variables):
            variable.assign(arrays[f"meta_optimizer/{index}"])
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
                state=keras.tree.pack_sequence_as(structure, flat),
                initial_loss=ops.convert_to_tensor(arrays[f"{key}/initial_loss"]),
                step=entry["step"])

"""``ESOptimizer``: trains a Keras model by evolution strategies (``l2o.blackbox``'s docstring)."""

import numbers

import keras
import numpy as np
from tqdm.auto import tqdm

from l2o import distributed
from l2o.blackbox.compatibility import Model, SamplingStrategy
from l2o.blackbox.evaluators import LocalEvaluator, VectorizedEvaluator, WorkerEvaluator
from l2o.blackbox.maths import STRATEGIES, centred_ranks, layer_schedule
from l2o.validation import check_choice

MODES = ("max", "min")


class ESOptimizer:
    """Trains ``model`` by evolution strategies on ``objective``, which it MAXIMISES.

    Args:
        model: a built Keras model; its trainable weights are optimised in place. Or a
            ``Model`` wrapper of one, which hands the objective a wrapper and sets ``strategy``.
        objective: ``objective(model, samples) -> float or list of K floats``, or a
            vectorised ``objective(stacked_weights, samples) -> [n] or [n, K]`` (see the
            module docstring). Maximised unless ``mode="min"``.
        base_optimizer: any Keras optimiser (instance, name or config); it receives the
            negated ES ascent direction as its gradient.
        sigma: perturbation scale (standard deviation of the weight noise).
        n_samples: candidates per step; even (mirrored pairs).
        obj_weights: weight of each objective's centred ranks; default 1/K each. A negative
            weight minimises that objective.
        strategy: weights perturbed each step: ``all`` (default), ``random``, ``bottom_up``,
            ``top_down``, or the same as a ``SamplingStrategy``.
        mode: ``max`` (default) or ``min``, applied to every objective.
        n_workers: 1 evaluates candidates in this process; more runs a per-candidate
            objective on that many Ray workers (see the module docstring).
        address: the Ray cluster of the workers: None starts a private one on this
            machine, ``"auto"`` or ``"ray://host:port"`` joins one.
        seed: seeds the noise and the random layer choice.
    """

    def __init__(self, model, objective, base_optimizer="adam", sigma=0.05, n_samples=50,
                 obj_weights=None, strategy=None, mode="max", n_workers=1, seed=0,
                 address=None):
        if isinstance(model, Model):
            model, objective, strategy = model.unwrap(objective, strategy)
        if isinstance(strategy, SamplingStrategy):
            strategy = strategy.value
        strategy = "all" if strategy is None else strategy
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
        if not model.trainable_variables:
            raise ValueError("model has no trainable weights (build it first, e.g. start a "
                             "Sequential with keras.Input)")
        if not callable(objective):
            raise TypeError(f"objective must be callable, got {type(objective).__name__}")
        if not (isinstance(sigma, numbers.Real) and np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 2 or n_samples % 2:
            raise ValueError(f"n_samples must be an even integer >= 2 (mirrored pairs), "
                             f"got {n_samples!r}")
        check_choice("strategy", strategy, STRATEGIES)
        check_choice("mode", mode, MODES)
        if not isinstance(n_workers, numbers.Integral) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        self.vectorized = bool(getattr(objective, "vectorized", False))
        if self.vectorized and n_workers > 1:
            raise ValueError("a vectorised objective evaluates all candidates in one call; "
                             "use n_workers=1 with it")
        if n_workers > 1 and not distributed.available():
            raise ValueError(f"n_workers > 1 runs candidates on Ray workers, and Ray is not "
                             f"installed: {distributed.INSTALL}")
        if obj_weights is not None:
            obj_weights = np.asarray(obj_weights, np.float64)
            if obj_weights.ndim != 1 or obj_weights.size == 0 or not np.all(
                    np.isfinite(obj_weights)):
                raise ValueError(f"obj_weights must be a non-empty list of finite numbers, "
                                 f"got {obj_weights.tolist()!r}")
        self.model, self.objective = model, objective
        self.base_optimizer = keras.optimizers.get(base_optimizer)
        if not self.base_optimizer.built:
            self.base_optimizer.build(model.trainable_variables)
        self.sigma, self.n_samples = float(sigma), int(n_samples)
        self.obj_weights, self.strategy, self.mode = obj_weights, strategy, mode
        self.n_workers, self.seed = int(n_workers), seed
        self.generator = np.random.default_rng(seed)
        self.iterations = 0
        self.layer_names, self.layer_groups = self._layer_groups(model)
        if self.vectorized:
            self.evaluator = VectorizedEvaluator(objective, self.n_samples)
        elif self.n_workers > 1:
            self.evaluator = WorkerEvaluator(model, objective, self.n_workers, address)
        else:
            self.evaluator = LocalEvaluator(model, objective)

    @staticmethod
    def _layer_groups(model):
        """Names and trainable-variable indices of the layers that own trainable weights."""
        index_of = {id(v): i for i, v in enumerate(model.trainable_variables)}
        names, groups = [], []
        for layer in model.layers:
            indices = [index_of[id(v)] for v in layer.trainable_variables if id(v) in index_of]
            if indices:
                names.append(layer.name)
                groups.append(indices)
        owned = {i for group in groups for i in group}
        unowned = [i for i in range(len(index_of)) if i not in owned]
        if unowned:
            names.append(model.name)
            groups.append(unowned)
        return names, groups

    def estimate(self, samples=None):
        """One ES estimate without applying it.

        Returns ``(ascent, values, layers)``: ``ascent`` maps a trainable-variable index to
        g for that variable (the direction that increases the objective, whatever the
        ``mode``), ``values`` the [n, K] objective values as the objective returned them,
        ``layers`` the perturbed layer indices.
        """
        layers = layer_schedule(self.strategy, len(self.layer_groups), self.iterations,
                                self.generator)
        center = [np.asarray(v.numpy()) for v in self.model.trainable_variables]
        half = self.n_samples // 2
        directions = {}
        for index in (i for layer in layers for i in self.layer_groups[layer]):
            draws = self.generator.standard_normal((half,) + center[index].shape)
            directions[index] = np.concatenate([draws, -draws]).astype(center[index].dtype)
        offsets = {index: self.sigma * eps for index, eps in directions.items()}
        values = self.evaluator(center, offsets, samples)
        scores = centred_ranks(self._maximised(values)) @ self._weights_for(values.shape[1])
        ascent = {index: (np.tensordot(scores, eps.astype(np.float64), axes=1)
                          / (self.n_samples * self.sigma)).astype(eps.dtype)
                  for index, eps in directions.items()}
        return ascent, values, layers

    def step(self, samples=None):
        """One ES update of the model's weights; returns this step's statistics."""
        ascent, values, layers = self._update(samples)
        best = values.max(axis=0) if self.mode == "max" else values.min(axis=0)
        return {"iteration": self.iterations,
                "layers": [self.layer_names[layer] for layer in layers],
                "objective_mean": np.nanmean(values, axis=0).tolist(),
                "objective_best": best.tolist(),
                "ascent_norm": float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64))
                                                 for g in ascent.values())))}

    def gradient_step(self, samples=None):
        """One ES update, as ``step``, returning its ascent direction g instead of statistics:
        ``{trainable-variable index: g}`` for the weights it moved (pytorch-optimize's name)."""
        return self._update(samples)[0]

    def _update(self, samples):
        ascent, values, layers = self.estimate(samples)
        variables = self.model.trainable_variables
        self.base_optimizer.apply([-g for g in ascent.values()],
                                  [variables[index] for index in ascent])
        self.iterations += 1
        return ascent, values, layers

    def train(self, iterations, samples=None, callback=None, progress=True):
        """Runs ``iterations`` steps with a progress bar; returns their statistics.

        ``samples`` is a callable ``iteration -> samples`` (a fresh minibatch, new episode
        seeds) or one value used at every step. ``callback(stats)`` runs after each step; it
        may add entries to ``stats`` (the bar shows the numeric ones, e.g. a validation
        accuracy) and returns a true value to stop early.
        """
        history = []
        with tqdm(range(iterations), desc="ES", unit="step", mininterval=1.0,
                  disable=not progress) as bar:
            for _ in bar:
                step_samples = samples(self.iterations) if callable(samples) else samples
                stats = self.step(step_samples)
                stop = callback(stats) if callback is not None else False
                history.append(stats)
                bar.set_postfix(_postfix(stats), refresh=False)
                if stop:
                    break
        return history

    def get_config(self):
        """A JSON-friendly summary of the settings (the model and objective are not in it)."""
        return {"base_optimizer": keras.optimizers.serialize(self.base_optimizer),
                "sigma": self.sigma, "n_samples": self.n_samples,
                "obj_weights": None if self.obj_weights is None else self.obj_weights.tolist(),
                "strategy": self.strategy, "mode": self.mode, "n_workers": self.n_workers,
                "seed": self.seed, "vectorized": self.vectorized, "layers": self.layer_names,
                "iterations": self.iterations}

    def close(self):
        """Stops the workers, if they were started."""
        self.evaluator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _maximised(self, values):
        signed = values if self.mode == "max" else -values
        return np.where(np.isnan(signed), -np.inf, signed)

    def _weights_for(self, count):
        if self.obj_weights is None:
            return np.full(count, 1.0 / count)
        if self.obj_weights.size != count:
            raise ValueError(f"obj_weights has {self.obj_weights.size} entries but the "
                             f"objective returned {count} value(s) per candidate")
        return self.obj_weights


def _postfix(stats):
    shown = {"mean": stats["objective_mean"], "best": stats["objective_best"],
             **{key: value for key, value in stats.items()
                if key not in ("iteration", "layers", "objective_mean", "objective_best",
                               "ascent_norm")}}
    return {key: "/".join(f"{v:.4g}" for v in np.ravel(value))
            for key, value in shown.items() if np.issubdtype(np.asarray(value).dtype, np.number)}

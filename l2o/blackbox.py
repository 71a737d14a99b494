"""Black-box training of Keras models with evolution strategies (Salimans et al. 2017).

THE OBJECTIVE IS MAXIMISED. Pass ``mode="min"`` to minimise it instead (a loss, an error
count). An objective needs no gradient: accuracy, an episode's reward, a count all work, and
it may return several values at once (several objectives, combined by ``obj_weights``).

The estimator
-------------
Let theta be the weights perturbed this step (the trainable weights of the layers that the
``strategy`` selects), n = ``n_samples`` (even) and sigma the perturbation scale. Each step

1. draws n/2 directions eps_1 .. eps_{n/2} ~ N(0, I) and mirrors them,
   eps_{j + n/2} = -eps_j (antithetic sampling: the pairs cancel the even part of the
   objective, which carries no gradient information);
2. evaluates the n candidates theta + sigma eps_j on the same ``samples`` (common random
   numbers), giving f_jk for candidate j and objective k (negated under ``mode="min"``;
   NaN counts as the worst value);
3. replaces each objective's column by centred ranks,
   r_jk = rank_k(j) / (n - 1) - 1/2 in [-1/2, 1/2], rank 0 being the smallest and tied
   values sharing the mean of their ranks, so that the estimate ignores the objectives'
   scales and outliers and only their order matters;
4. forms the ascent direction
   g = sum_j (sum_k w_k r_jk) eps_j / (n sigma),  w = ``obj_weights`` (default 1/K each);
5. hands -g to the Keras ``base_optimizer`` as the gradient of theta: Keras optimisers
   minimise, so the negated ascent direction makes them climb f.

A negative ``w_k`` minimises objective k while the others are maximised. Weights of layers
not selected this step are neither perturbed nor given to the optimiser, so their optimiser
slots (momenta) do not advance either (the optimiser's step counter, which Adam's bias
correction uses, counts every step all the same).

Which weights are perturbed (``strategy``; "layers" are the model's layers that own trainable
weights, in ``model.layers`` order, plus one last group for weights the model owns itself):
``all`` every layer every step; ``random`` one layer drawn uniformly each step;
``bottom_up`` cycles 1, 2, ..., L, 1, ...; ``top_down`` cycles L, L-1, ..., 1, L, ...

How candidates are evaluated
----------------------------
- Per candidate: ``objective(model, samples) -> float or sequence of K floats``. During the
  call ``model`` holds the candidate's weights; the ESOptimizer restores them afterwards.
- Vectorised: an objective with a true ``vectorized`` attribute (the ``vectorized``
  decorator sets it) is called once per step as
  ``objective(stacked_weights, samples) -> [n] or [n, K]``, ``stacked_weights`` being numpy
  arrays aligned with ``model.trainable_variables``, each shaped [n, *weight.shape].
  ``batched_forward(model, stacked_weights, inputs)`` runs the model's forward pass for all
  candidates in one compiled call.
- On Ray workers: with ``n_workers > 1`` a per-candidate objective runs on that many Ray
  actors (``l2o.distributed``; Ray is the optional ``distributed`` extra), each given a copy
  of the model and the objective once, at the first step (seconds: each worker imports
  TensorFlow), and a contiguous share of each step's candidates. ``address`` None starts a
  private Ray on this machine (bound to 127.0.0.1, no dashboard), ``"auto"`` or
  ``"ray://host:port"`` joins a cluster; a process already connected to Ray keeps its
  connection. The model, the objective (cloudpickle: lambdas and closures work) and the
  samples are sent to the workers; custom layers must be registered Keras serialisables.
  A worker that dies is restarted by Ray and its share evaluated again. The workers live
  until ``close()`` or the end of a ``with`` block.

The noise, the random layer choice and hence the estimate depend only on ``seed`` and the
objective's values, so every evaluation route gives the same estimate for the same seed.

pytorch-optimize's names
------------------------
For code written against pytorch-optimize (Ramamurthy 2020), whose ES this is:
``Model(net, strategy=SamplingStrategy.BOTTOM_UP)`` wraps a built Keras model with its
layer strategy, ``Objective`` is the base class of ``objective(model, samples)`` and
``Samples`` of the data handed to it, and ``ESOptimizer.gradient_step(samples)`` takes one
step and returns its ascent direction. Given a ``Model``, the ESOptimizer perturbs the
wrapped network and hands the objective a ``Model`` of it (``model.forward(x)`` runs the
candidate); no objective needs these classes, they only carry the names.
"""

import abc
import enum
import functools
import itertools
import numbers
import types
import weakref

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from l2o import backend, distributed
from l2o.validation import check_choice

STRATEGIES = ("all", "random", "bottom_up", "top_down")
MODES = ("max", "min")


def vectorized(objective):
    """Marks ``objective`` as evaluating all candidates at once from stacked weights."""
    objective.vectorized = True
    return objective


def centred_ranks(values):
    """Ranks of ``values`` along axis 0 mapped onto [-0.5, 0.5]; ties share their mean rank.

    A 2-D array is ranked column by column (one column per objective).
    """
    values = np.asarray(values, np.float64)
    count = values.shape[0]
    if count < 2:
        return np.zeros_like(values)
    columns = values.reshape(count, -1)
    ranks = np.empty_like(columns)
    for column in range(columns.shape[1]):
        _, inverse, ties = np.unique(columns[:, column], return_inverse=True,
                                     return_counts=True)
        first_rank = np.cumsum(ties) - ties
        ranks[:, column] = (first_rank + (ties - 1) / 2)[inverse]
    return (ranks / (count - 1) - 0.5).reshape(values.shape)


def layer_schedule(strategy, n_layers, iteration, generator):
    """Indices (0-based) of the layers perturbed at step ``iteration`` (counted from 0)."""
    if strategy == "all":
        return tuple(range(n_layers))
    if strategy == "random":
        return (int(generator.integers(n_layers)),)
    if strategy == "bottom_up":
        return (iteration % n_layers,)
    if strategy == "top_down":
        return (n_layers - 1 - iteration % n_layers,)
    raise AssertionError(f"unchecked layer strategy {strategy!r}")


_COMPILED_FORWARDS = weakref.WeakKeyDictionary()


def batched_forward(model, stacked_weights, inputs, per_candidate_inputs=False):
    """Outputs of ``model`` for every candidate weight set, in one compiled call.

    ``stacked_weights`` is aligned with ``model.trainable_variables``, each shaped
    [n, *weight.shape]; non-trainable weights keep their current values. ``inputs`` is one
    batch shared by all candidates, or with ``per_candidate_inputs`` a batch per candidate
    stacked along a leading axis of size n. Returns [n, *output_shape].
    """
    compiled = _COMPILED_FORWARDS.setdefault(model, {})
    if per_candidate_inputs not in compiled:
        model_ref = weakref.ref(model)  # the cache must not keep the model alive

        def forward(weights, fixed, batch):
            return model_ref().stateless_call(weights, fixed, batch)[0]

        # The non-trainable values are an argument: read inside, JAX would keep the first
        # trace's values.
        if per_candidate_inputs:
            def forward_all(stacked, fixed, batches):
                return ops.vectorized_map(lambda pair: forward(pair[0], fixed, pair[1]),
                                          (stacked, batches))
        else:
            def forward_all(stacked, fixed, batch):
                return ops.vectorized_map(lambda weights: forward(weights, fixed, batch),
                                          stacked)

        compiled[per_candidate_inputs] = backend.compile_fn(forward_all,
                                                            relax_leading_dim=True)
    return compiled[per_candidate_inputs](
        list(stacked_weights), [v.value for v in model.non_trainable_variables], inputs)


def _evaluate_candidates(model, objective, center, offsets, samples):
    """Objective values of candidates ``center + offsets[:, j]``, one at a time on ``model``.

    ``offsets`` maps a trainable-variable index to that variable's perturbations [m, ...];
    the other variables stay at ``center``. Leaves ``model`` at ``center``.
    """
    variables = model.trainable_variables
    for variable, value in zip(variables, center):
        variable.assign(value)
    count = len(next(iter(offsets.values())))
    values = []
    for candidate in range(count):
        for index, offset in offsets.items():
            variables[index].assign(center[index] + offset[candidate])
        values.append(_objective_vector(objective(model, samples)))
    for index in offsets:
        variables[index].assign(center[index])
    return values


def _objective_vector(value):
    vector = np.asarray(ops.convert_to_numpy(value), np.float64).reshape(-1)
    if vector.size == 0:
        raise ValueError("the objective returned no value")
    return vector


def _stack_rows(rows):
    if len({row.size for row in rows}) != 1:
        raise ValueError(f"the objective returned different numbers of values for "
                         f"different candidates: {sorted({row.size for row in rows})}")
    return np.stack(rows)


class CandidateEvaluator:
    """How the candidates of one ES step are scored: ``evaluator(center, offsets, samples)``.

    ``center`` holds the current weights (numpy, aligned with
    ``model.trainable_variables``), ``offsets`` maps a variable index to its n
    perturbations; the result is the [n, K] objective values. ``close()``
    releases what the evaluator holds (workers).
    """

    def __call__(self, center, offsets, samples):
        raise NotImplementedError

    def close(self):
        """Nothing to release by default."""


class LocalEvaluator(CandidateEvaluator):
    """One candidate at a time on the model itself, in this process (also the body of each
    ``WorkerEvaluator`` worker)."""

    def __init__(self, model, objective):
        self.model, self.objective = model, objective

    def __call__(self, center, offsets, samples):
        return _stack_rows(_evaluate_candidates(self.model, self.objective, center, offsets,
                                                samples))


class VectorizedEvaluator(CandidateEvaluator):
    """Every candidate in one call of a vectorised objective on stacked weights."""

    def __init__(self, objective, n_samples):
        self.objective, self.n_samples = objective, n_samples

    def __call__(self, center, offsets, samples):
        stacked = [center[i][None] + offsets[i] if i in offsets
                   else np.broadcast_to(center[i], (self.n_samples,) + center[i].shape)
                   for i in range(len(center))]
        values = np.asarray(ops.convert_to_numpy(self.objective(stacked, samples)), np.float64)
        if values.ndim not in (1, 2) or values.shape[0] != self.n_samples:
            raise ValueError(f"a vectorised objective must return shape [{self.n_samples}] "
                             f"or [{self.n_samples}, K], got {values.shape}")
        return values.reshape(self.n_samples, -1)


class WorkerEvaluator(CandidateEvaluator):
    """Candidates split across Ray workers, each holding a copy of the model and objective.

    The workers start on the first call (each imports TensorFlow).
    """

    def __init__(self, model, objective, n_workers, address=None):
        self.model, self.objective = model, objective
        self.n_workers, self.address = n_workers, address
        self._workers = None

    def __call__(self, center, offsets, samples):
        if self._workers is None:
            self._workers = distributed.Workers(
                functools.partial(LocalEvaluator, self.model, self.objective), self.n_workers,
                self.address, cpus_per_worker=1, gpus_per_worker=0)
        count = len(next(iter(offsets.values())))
        bounds = np.linspace(0, count, self.n_workers + 1).astype(int)
        shares = {worker: ("__call__", (center, {i: offset[start:stop]
                                                 for i, offset in offsets.items()}, samples))
                  for worker, (start, stop) in enumerate(itertools.pairwise(bounds))
                  if stop > start}
        # A share has no state to lose: a lost worker's share is simply evaluated again.
        values, _ = self._workers.call(shares, retry=True)
        return np.concatenate([values[worker] for worker in sorted(values)])

    def close(self):
        if self._workers is not None:
            self._workers.close()
            self._workers = None


class SamplingStrategy(enum.Enum):
    """pytorch-optimize's names for the ``strategy`` of ``ESOptimizer`` (its values)."""

    RANDOM = "random"
    BOTTOM_UP = "bottom_up"
    TOP_DOWN = "top_down"
    ALL = "all"


class Samples(types.SimpleNamespace):
    """pytorch-optimize's container for the data of one step: ``Samples(inputs=x, targets=y)``,
    or a dataclass subclass declaring the fields its objective reads. The objective receives
    it as given (so does any other value passed as ``samples``)."""


class Objective(abc.ABC):
    """pytorch-optimize's objective: ``objective(model, samples) -> float or list of K floats``,
    MAXIMISED (``mode="min"`` minimises). Subclassing only names the contract: any callable of
    that form is an objective."""

    @abc.abstractmethod
    def __call__(self, model, samples):
        """The objective value(s) of ``model`` as it stands (a candidate's weights) on ``samples``."""


class Model:
    """pytorch-optimize's model wrapper: a built Keras model ``net`` and the layers ES perturbs
    each step (``strategy``, a ``SamplingStrategy`` or its value; ``RANDOM`` by default, as
    there). ``forward(x)``, or calling the wrapper, runs ``net`` at its current weights.
    """

    def __init__(self, net, strategy=SamplingStrategy.RANDOM):
        if not isinstance(net, keras.Model):
            raise TypeError(f"net must be a keras.Model, got {type(net).__name__}")
        self.net, self.strategy = net, SamplingStrategy(strategy)

    def forward(self, inputs):
        return self.net(inputs)

    __call__ = forward

    def unwrap(self, objective, strategy):
        """``ESOptimizer``'s (model, objective, strategy) for this wrapper: the network, the
        objective called with a wrapper of the network (unless vectorised: that one receives
        stacked weights), and this wrapper's strategy, which ``strategy`` must not contradict.
        """
        if strategy is not None and SamplingStrategy(strategy) != self.strategy:
            raise ValueError(f"strategy is given twice: {SamplingStrategy(strategy).value!r} "
                             f"and the Model wrapper's {self.strategy.value!r}; give one")
        if callable(objective) and not getattr(objective, "vectorized", False):
            objective = _WrapperObjective(objective, self.strategy)
        return self.net, objective, self.strategy.value


class _WrapperObjective:
    """An objective written for ``Model`` wrappers, called by ES with the bare network.

    It wraps whichever network it is given (a worker's copy, too), so that the candidate's
    weights are the ones the objective sees.
    """

    def __init__(self, objective, strategy):
        self.objective, self.strategy = objective, strategy

    def __call__(self, net, samples):
        return self.objective(Model(net, self.strategy), samples)


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

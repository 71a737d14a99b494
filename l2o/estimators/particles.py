"""Vectorised truncations of a learned optimiser's inner training, for ES and PES.

``ParticleEstimator`` is the ``GradientEstimator`` of truncated ES and PES:
its worker state is a population (``TruncatedES`` or ``PES``), which keeps the
particles' inner states between truncations; validation is TBPTT's plain
unroll, so that every estimator is scored alike.

``ParticleTruncations`` turns (update rule, problem) into the protocol of
``l2o.estimators.es``: the meta-weights flattened into one vector theta,
P particles' inner states, and one batched call that unrolls all of them. A
particle's state is ``{"seed", "params", "opt", "initial_loss", "scales"}``:
the seed of its inner run (which fixes its initial parameters, its batches
and its random parameter scaling), its parameters and optimiser state, f_0
for the meta-loss, and the scales of ``training/parameter_scale_spread``. Each particle's
truncation is scored by the same ``meta_loss`` and meta-objective as TBPTT's. Particles at
the same (seed, step) share one copy of their batches (and validation minibatches);
otherwise each gets its own. With the floor (``training/floor_weight``), a particle's
state also holds ``"reference"``: the parameters and state of its reference Adam run.

Distributed (``distributed/workers`` N > 0): a population's shards
(``l2o.estimators.es``) live on N workers (``l2o.distributed``), shard w on
worker w, which builds the run's estimators once (``ParticleHost``) and keeps
its particles' inner states and accumulated noise between truncations; each
truncation sends theta and two seeds to every worker and brings back a share
of the estimate (one vector) and the shard's losses.
"""

import itertools
import weakref

import keras
import numpy as np
from keras import ops

from l2o import backend, tree
from l2o.estimators.base import EstimatorSpec, GradientEstimate, GradientEstimator
from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.unroll import meta_loss, reference_init, unroll
from l2o.registry import ESTIMATORS
from l2o.tree import unflatten_like
from l2o.validation import ConfigError, check_choice, check_range


class ParticleTruncations:
    """``unroll`` and ``init_state`` for ``TruncatedES``/``PES`` over a learned optimiser.

    ``new_trajectory(seed)`` returns a fresh ``l2o.estimators.tbptt.Trajectory``;
    ``template`` maps meta-weight names to arrays of their shapes, in the
    order that ``flatten`` and ``unflatten`` use.
    """

    def __init__(self, rule, problem, template, new_trajectory, loss_args, unroll_weights,
                 objective):
        self.problem, self.new_trajectory, self.objective = problem, new_trajectory, objective
        self.names = list(template)
        self._like = [np.zeros(np.shape(template[name]), np.float32) for name in self.names]

        def truncation(thetas, params, opt, initial_losses, scales, reference, batches, shared):
            # A state of one copy (leading axis 1) starts every particle: truncated ES.
            count = ops.shape(thetas)[0]
            params, opt, initial_losses, scales, reference = keras.tree.map_structure(
                lambda t: ops.broadcast_to(t, (count,) + tuple(ops.shape(t)[1:])),
                (params, opt, initial_losses, scales, reference))

            def one(elements):
                theta, params, opt, initial_loss, scales, reference, *own = elements
                meta = dict(zip(self.names, unflatten_like(theta, self._like)))
                data, held_out = batches if shared else own[0]
                params, opt, _, scores, *floor = unroll(
                    rule, problem, meta, params, opt, data, second_order=False, scales=scales,
                    objective=objective, held_out=held_out,
                    reference=(reference["params"], reference["opt"]) if reference else None)
                reference_scores = None
                if floor:
                    (reference_params, reference_opt), reference_scores = floor
                    reference = {"params": reference_params, "opt": reference_opt}
                return meta_loss(scores, initial_loss, loss_args, unroll_weights, objective.name,
                                 reference_scores, objective.floor_weight), params, opt, reference

            elements = (thetas, params, opt, initial_losses, scales, reference) + (
                () if shared else (batches,))
            return ops.vectorized_map(one, elements)

        # Never XLA: it cannot compile vectorized_map's while-loop fallback (TensorListReserve
        # of variants, TF 2.21), and ``auto`` turns XLA on wherever there is a GPU.
        self._truncation = backend.compile_fn(truncation, False, relax_leading_dim=True)

    def flatten(self, meta_weights):
        return np.concatenate([np.reshape(meta_weights[name], -1) for name in self.names])

    def unflatten(self, vector):
        return [ops.convert_to_numpy(t) for t in unflatten_like(np.asarray(vector), self._like)]

    def init_state(self, seed):
        trajectory = self.new_trajectory(seed, scaled=True)
        # Unscaled particles carry scales of one: the products are then exact.
        scales = trajectory.scales or [ops.ones_like(p) for p in trajectory.params]
        # numpy int64: JAX without x64 holds it as int32 (seeds are 31-bit) and, given no
        # dtype to honour, does not warn.
        state = {"seed": np.asarray(seed, np.int64), "params": trajectory.params,
                 "opt": trajectory.state, "initial_loss": trajectory.initial_loss,
                 "scales": scales}
        if self.objective.floor_weight > 0:
            state["reference"] = {"params": trajectory.params,
                                  "opt": reference_init(trajectory.params)}
        return state

    def data(self, seed, step, length):
        """(training batches, validation minibatches) of steps ``step`` .. of run ``seed``."""
        return (self.problem.batches(seed, step, length),
                self.objective.held_out(seed, step + 1, length))

    def unroll(self, thetas, states, steps, length):
        seeds = np.broadcast_to(ops.convert_to_numpy(states["seed"]), np.shape(steps))
        keys = list(zip(seeds.tolist(), np.asarray(steps).tolist()))
        shared = len(set(keys)) == 1
        if shared:
            data = self.data(*keys[0], length)
        else:
            data = keras.tree.map_structure(lambda *parts: np.stack(parts),
                                            *[self.data(seed, step, length) for seed, step in keys])
        losses, params, opt, reference = self._truncation(
            thetas, states["params"], states["opt"], states["initial_loss"], states["scales"],
            states.get("reference", {}), keras.tree.map_structure(ops.convert_to_tensor, data),
            shared)
        seeds = np.broadcast_to(states["seed"], np.shape(steps))
        return losses, {**states, "seed": seeds, "params": params, "opt": opt,
                        **({"reference": reference} if reference else {})}



class ParticleEstimator(GradientEstimator):
    """A population of perturbed particles (``population_class``: ``TruncatedES`` or ``PES``)
    over a ``TBPTT``'s problem and rule.

    ``options`` are the population's: ``sigma``, ``n_particles``, ``horizon``
    and, for PES, ``stagger``. After ``place_on(workers, key)`` the populations
    it starts keep their particles on ``workers``.
    """

    def __init__(self, population_class, tbptt, **options):
        self.tbptt, self.options = tbptt, options
        self.population_class = population_class
        self.meta_variables = tbptt.meta_variables
        template = {name: v.numpy() for name, v in self.meta_variables.items()}
        self.truncations = ParticleTruncations(
            tbptt.rule, tbptt.problem, template, tbptt.new_trajectory,
            tbptt.loss_args, tbptt.unroll_weights, tbptt.objective)
        self.workers = self.key = None

    def distributable(self, key):
        return [(key, self)]

    def place_on(self, workers, key):
        """``workers`` (``l2o.distributed.Workers`` of ``ParticleHost``) serve this estimator
        as ``key``."""
        self.workers, self.key = workers, key

    def init_worker_state(self, seed):
        # A population draws its particles' seeds from the truncations' generators.
        shards = None if self.workers is None else WorkerShards(self.workers, self.key)
        return self.population_class(self.truncations.unroll, self.truncations.init_state,
                                     shards=shards, **self.options)

    def compute_gradient_estimate(self, worker_state, generator, length, teacher=None):
        theta = self.truncations.flatten({name: v.numpy()
                                          for name, v in self.meta_variables.items()})
        gradient, value = worker_state.estimate(theta, generator, length)
        grads = [ops.convert_to_tensor(g, v.dtype) for g, v in
                 zip(self.truncations.unflatten(gradient), self.meta_variables.values())]
        usable = bool(tree.all_finite([ops.convert_to_tensor(value), *grads]))
        return GradientEstimate(loss=value, grads=grads, usable=usable, steps=length,
                                restart=not usable), worker_state

    def validation_metrics(self, unroll, seed):
        return self.tbptt.validation_metrics(unroll, seed)

    def worker_arrays(self, worker_state):
        return worker_state.arrays(), {}

    def load_worker_state(self, arrays, info):
        population = self.init_worker_state(0)
        population.load_arrays(arrays)
        return population


class ParticleHost:
    """What a distributed worker holds: the run's particle estimators ({key: estimator},
    built once by ``build()`` just as on the learner) and the shards placed on it."""

    def __init__(self, build):
        self.estimators, self.shards = build(), {}

    def create(self, key, population, shard_class, options, pairs):
        truncations = self.estimators[key].truncations
        self.shards[key, population] = shard_class(truncations.unroll, truncations.init_state,
                                                   pairs=pairs, **options)

    def shard(self, key, population, method, args):
        return getattr(self.shards[key, population], method)(*args)

    def forget(self, key, population):
        self.shards.pop((key, population), None)


class WorkerShards:
    """A population's shards on ``workers`` (of ``ParticleHost``), shard w on worker w: the
    interface of ``es.LocalShards``.

    A shard lost with its worker is created again, empty, on the restarted worker
    (the population decides how it rejoins). The shards leave their workers when
    the population is garbage.
    """

    _populations = itertools.count()

    def __init__(self, workers, key):
        self.workers, self.key, self.count = workers, key, workers.count
        self.population = next(self._populations)
        self.made_on, self.creations = {}, {}
        finalizer = weakref.finalize(self, workers.notify, {
            index: ("forget", (key, self.population)) for index in range(self.count)})
        finalizer.atexit = False

    def create(self, shard_class, options, ranges):
        self.creations = {index: ("create", (self.key, self.population, shard_class, options,
                                             pairs))
                          for index, pairs in enumerate(ranges)}
        self._make(range(self.count))

    def _make(self, indices):
        self.workers.call({index: self.creations[index] for index in indices}, retry=True)
        self.made_on.update({index: self.workers.incarnations[index] for index in indices})

    def call(self, method, *args, only=None):
        indices = list(range(self.count) if only is None else only)
        results, lost = self.workers.call(
            {index: ("shard", (self.key, self.population, method, args)) for index in indices},
            expect=self.made_on)
        if lost:
            self._make(lost)
        return [results.get(index) for index in indices], lost


class ParticleSpec(EstimatorSpec):
    """The options of the particle estimators: perturbation scale ``sigma``, particles
    ``n_particles`` (antithetic pairs, so even), the inner ``horizon`` in steps after which a
    particle restarts (null: only when its trajectory would), and ``stagger``: particles
    restart at the horizon together (``lockstep``) or, PES only, each at its own offset
    (``breakstep``, which needs a ``horizon``)."""

    population_class = None

    def __init__(self, sigma=0.01, n_particles=8, horizon=None, stagger="lockstep"):
        self.options = {"sigma": sigma, "n_particles": n_particles, "horizon": horizon}
        if self.population_class is PES:
            self.options["stagger"] = stagger

    @classmethod
    def validate_config(cls, estimator, config):
        horizon = estimator["horizon"]
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int)
                                    or horizon < 1):
            raise ConfigError(f"estimator/horizon: must be null or a positive int, "
                              f"got {horizon!r}")
        check_range("estimator/sigma", estimator["sigma"], 0.0)
        particles = estimator["n_particles"]
        if particles < 2 or particles % 2:
            raise ConfigError(f"estimator/n_particles: must be even and at least 2 "
                              f"(antithetic pairs), got {particles}")
        name = config["estimator_constructor"]
        check_choice("estimator/stagger", estimator["stagger"], ("lockstep", "breakstep"))
        if estimator["stagger"] == "breakstep" and (cls.population_class is not PES
                                                    or horizon is None):
            raise ConfigError(f"estimator/stagger: breakstep staggers PES restarts at the "
                              f"horizon; it needs estimator_constructor pes and an "
                              f"estimator/horizon, got {name} and horizon {horizon}")
        # The particles score plain unrolls: nothing to repeat, imitate or cut short (a
        # diverging particle is not restarted on its own).
        for key, neutral in (("repeat", 1), ("p_teacher", 0.0)):
            if config["training"][key] != neutral:
                raise ConfigError(f"training/{key}: must be {neutral} with "
                                  f"estimator_constructor {name}, got "
                                  f"{config['training'][key]!r}")
        if config["loss_args"]["obj_train_max_multiplier"] > 0:
            raise ConfigError(f"loss_args/obj_train_max_multiplier: particle estimators do "
                              f"not restart single diverging particles; it must be <= 0 with "
                              f"estimator_constructor {name}")

    def distributed_units(self):
        return self.options["n_particles"] // 2

    def build(self, tbptt):
        return ParticleEstimator(self.population_class, tbptt, **self.options)


@ESTIMATORS.register("es")
class TruncatedESSpec(ParticleSpec):
    """``estimator_constructor: es``: truncated ES (``TruncatedES``), each truncation's
    particles perturbed afresh."""

    population_class = TruncatedES


@ESTIMATORS.register("pes")
class PESSpec(ParticleSpec):
    """``estimator_constructor: pes``: Persistent ES (``PES``), each particle's perturbations
    accumulated until it restarts."""

    population_class = PES

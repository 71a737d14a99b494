"""Evolution-strategies meta-gradients: truncated ES and Persistent ES.

Both drive a *vectorised truncation*, a callable

    unroll(thetas, states, steps, length) -> (losses [P], states)

that advances P copies of the inner problem ``length`` steps at once, copy p
with meta-parameters ``thetas[p]`` from ``states[p]`` (any pytree whose leaves
have a leading particle axis; an axis of 1 is one state that every copy starts
from, broadcast inside the unroll), ``steps[p]`` being how many inner steps copy p
has taken so far (a numpy array; the inner problem may use it to pick its
batches). ``init_state(seed)`` returns one fresh copy's state, keyed by the
integer ``seed``. Particles are evaluated in that one batched call, never in a
Python loop over particles.

Noise is antithetic: N/2 draws eps ~ N(0, sigma^2 I) and their negatives.
Pair j's draw in a truncation comes from its own stream (``PARTICLE_NOISE``
keyed by the truncation's noise seed and j), so it does not depend on which
process draws it.

Truncated ES (all particles share the inner state s):
    g = sum_i eps_i L(unroll(s, theta + eps_i, K)) / (N sigma^2);
    then s advances with the unperturbed theta (in the same batched call).

PES (Vicol, Metz and Sohl-Dickstein, ICML 2021): particle i keeps its own
state s_i and accumulated noise xi_i; each truncation runs
    (L_i, s_i) = unroll(s_i, theta + eps_i, K),   xi_i += eps_i,
    g = sum_i xi_i L_i / (N sigma^2),
so that, summed over the truncations of a horizon, the estimates are unbiased
for the gradient of the (Gaussian-smoothed) total loss. A particle's state
re-initialises and its xi resets once its step count reaches the horizon T
(never when T is None). ``lockstep`` particles all start together;
``breakstep`` staggers antithetic pair j's first horizon to end after
T (1 - j / (N/2)) steps, so that resets (and fresh, high-loss starts) are
spread over time instead of hitting every particle at once.

The arithmetic above is in pure functions on numpy arrays (``antithetic_noise``,
``weighted_sum``, ``pes_share``, ``es_gradient``, ``horizon_ends``,
``breakstep_offsets``), apart from the classes below that keep particles
between truncations, place them in shards and recover lost ones.

Shards. A population (``TruncatedES``, ``PES``) keeps its particles in shards,
each holding a consecutive range of antithetic pairs: their states, step
counts and (PES) accumulated noise. Each truncation the population draws two
seeds from the truncation's generator (the noise seed, and the seed of any
inner run that starts in this truncation) and sends theta and the seeds to
every shard; a shard returns its share sum_i xi_i L_i and its losses, and the
population sums the shares. One shard in this process is the single-process
path; ``l2o.estimators.particles`` places one shard on each distributed
worker. Either way every particle sees the same noise, batches and starts,
so the estimate does not depend on the number of shards, and checkpoints
(``arrays``) hold the particles in the population's order, so a population
resumes on any number of shards.

A shard lost with its worker (``shards.call`` reports it) sits this
truncation out: the estimate averages over the particles that reported, which
keeps it unbiased. Its PES particles then start fresh inner runs (accumulated
noise reset); an ES shard takes the shared state from a surviving shard.
"""

import itertools

import keras
import numpy as np
from keras import ops

from l2o import tree
from l2o.streams import Stream, seed_from, standard_normals
from l2o.validation import check_choice

STAGGERS = ("lockstep", "breakstep")


def antithetic_noise(seed, pairs, shape, sigma):
    """Perturbations of the antithetic pairs ``pairs`` (a range of pair indices) in the
    truncation of noise seed ``seed``: eps_j for j in ``pairs``, then -eps_j; [2 len(pairs),
    *shape]."""
    half = standard_normals(Stream.PARTICLE_NOISE, seed, last=pairs, shape=shape)
    half = (half * sigma).astype(np.float32)
    return np.concatenate([half, -half])


# The estimators' arithmetic, apart from where the particles live and how lost ones rejoin.

def weighted_sum(directions, losses):
    """sum_i directions_i L_i over the leading (particle) axis, in float64: a shard's share."""
    return np.tensordot(np.asarray(losses, np.float64), directions.astype(np.float64), axes=1)


def es_gradient(share, particles, sigma):
    """g = share / (N sigma^2): the estimate from the sum of every shard's share over the N
    ``particles`` that reported."""
    return (share / (particles * sigma ** 2)).astype(np.float32)


def pes_share(accumulated, eps, losses):
    """One PES truncation of some particles: ``(xi + eps, sum_i (xi_i + eps_i) L_i)`` for
    their accumulated noise xi, this truncation's perturbations eps and losses L."""
    accumulated = accumulated + eps
    return accumulated, weighted_sum(accumulated, losses)


def horizon_ends(steps, horizon):
    """Where particles at inner steps ``steps`` have reached the ``horizon`` (None: never)."""
    return np.zeros(np.shape(steps), bool) if horizon is None else np.asarray(steps) >= horizon


def breakstep_offsets(pairs, horizon, total_pairs):
    """The steps antithetic pairs ``pairs`` (of ``total_pairs``) start at under ``breakstep``,
    so that pair j's first horizon ends after T (1 - j / (N/2)) steps."""
    return (np.asarray(pairs, np.int64) * horizon) // total_pairs


def repeat_state(state, particles):
    """One copy's state stacked ``particles`` times along a new leading axis."""
    return keras.tree.map_structure(
        lambda t: ops.repeat(ops.convert_to_tensor(t)[None], particles, axis=0), state)


def pair_ranges(pairs, shards):
    """``shards`` consecutive ranges of the ``pairs`` antithetic pairs, sizes differing by at most 1."""
    if not 1 <= shards <= pairs:
        raise ValueError(f"{pairs} antithetic pairs cannot be split into {shards} shards")
    bounds = [pairs * k // shards for k in range(shards + 1)]
    return [range(first, stop) for first, stop in itertools.pairwise(bounds)]


def _reset_where(mask, fresh, states):
    """``states`` with the copies where ``mask`` is set replaced by ``fresh``."""
    def select(new, old):
        old = ops.convert_to_tensor(old)
        shaped = np.reshape(mask, (-1,) + (1,) * (len(old.shape) - 1))
        return ops.where(shaped, ops.cast(ops.convert_to_tensor(new)[None], old.dtype), old)

    return keras.tree.map_structure(select, fresh, states)


class LocalShards:
    """The shards of a population kept in this process: one, holding every pair.

    The interface a population drives its shards through (``particles.WorkerShards``
    is the other): ``count``, ``create`` and ``call``.
    """

    count = 1

    def __init__(self, unroll, init_state):
        self.unroll, self.init_state = unroll, init_state

    def create(self, shard_class, options, ranges):
        self.shards = [shard_class(self.unroll, self.init_state, pairs=pairs, **options)
                       for pairs in ranges]

    def call(self, method, *args, only=None):
        """``(results, lost)``: ``method(*args)`` of each shard (of those ``only`` lists), and
        the indices of the shards lost on the way, which have no result (never, here)."""
        indices = range(self.count) if only is None else only
        return [getattr(self.shards[index], method)(*args) for index in indices], []


class Population:
    """What truncated ES and PES share: the seeds, the shards and the sum of their shares.

    ``shards`` (default: ``LocalShards(unroll, init_state)``) says where the
    particles live; ``options`` are the population's settings, passed on to
    each shard.
    """

    shard_class = None

    def __init__(self, unroll, init_state, sigma, n_particles, horizon=None, shards=None,
                 **options):
        if n_particles < 2 or n_particles % 2:
            raise ValueError(f"n_particles must be even (antithetic pairs), got {n_particles}")
        self.init_state = init_state
        self.sigma, self.particles, self.horizon = float(sigma), int(n_particles), horizon
        self.shards = shards if shards is not None else LocalShards(unroll, init_state)
        self.ranges = pair_ranges(self.particles // 2, self.shards.count)
        self.options = {"sigma": self.sigma, "particles": self.particles,
                        "horizon": horizon, **options}
        self.shards.create(self.shard_class, self.options, self.ranges)
        self.restart = None

    def estimate(self, theta, generator, length):
        """(gradient estimate, mean perturbed loss); advances every particle."""
        theta = np.asarray(theta, np.float32)
        noise_seed, start_seed = seed_from(generator), seed_from(generator)
        # What a lost shard restarts from, also when it is found lost at a checkpoint.
        self.restart = (start_seed, theta.size)
        results, lost = self.shards.call("estimate", theta, length, noise_seed, start_seed)
        alive = [index for index in range(len(results)) if index not in lost]
        reported = [results[index] for index in alive]
        if lost:
            self.recover(lost, alive)
        if not reported:
            return np.full(theta.shape, np.nan, np.float32), float("nan")
        losses = np.concatenate([result[1] for result in reported])
        share = np.sum([result[0] for result in reported], axis=0)
        return es_gradient(share, losses.size, self.sigma), self.mean_loss(losses, reported)

    def mean_loss(self, losses, reported):
        return float(np.mean(losses))

    def recover(self, lost, alive):
        """Brings the shards ``lost`` (recreated empty) back into the population."""

    def arrays(self):
        """Everything a resumed run needs, as named numpy arrays (none before the start).

        A shard found lost here (its worker died since the last truncation) rejoins
        as it would within a truncation, and its arrays are asked for again.
        """
        parts, lost = self.shards.call("arrays")
        if lost:
            self.recover(lost, [index for index in range(len(parts)) if index not in lost])
            for index in lost:
                parts[index] = self.shards.call("arrays", only=[index])[0][0]
        return self.merge(parts)

    def load_arrays(self, arrays):
        """Inverse of ``arrays``, onto this population's shards (of any number); a shard
        lost while loading is loaded again on its restarted worker."""
        if arrays:
            for index, part in enumerate(self.split(arrays)):
                if self.shards.call("load_arrays", part, only=[index])[1]:
                    self.shards.call("load_arrays", part, only=[index])


class Shard:
    """The particles of the antithetic pairs ``pairs`` (a range) of a population."""

    def __init__(self, unroll, init_state, pairs, sigma, particles, horizon):
        self.unroll, self.init_state = unroll, init_state
        self.pairs, self.sigma, self.particles, self.horizon = pairs, sigma, particles, horizon

    def noise(self, seed, theta):
        return antithetic_noise(seed, self.pairs, theta.shape, self.sigma)


class TruncatedESShard(Shard):
    """Every shard holds the shared state and carries it on itself (the same computation on
    every shard): N_shard perturbed copies and the unperturbed one run in one batched call.

    The shared state is kept as numpy arrays with a leading axis of one copy, which the
    unroll broadcasts to every particle: no eager tensor op per leaf and truncation."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.state, self.step = None, 0

    @staticmethod
    def _one_copy(state):
        """One copy's ``state`` as numpy arrays with a leading axis of 1."""
        return keras.tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t))[None],
                                        state)

    def _start(self, seed):
        self.state, self.step = self._one_copy(self.init_state(seed)), 0

    def estimate(self, theta, length, noise_seed, start_seed):
        if self.state is None:
            self._start(start_seed)
        eps = self.noise(noise_seed, theta)
        thetas = np.concatenate([theta[None] + eps, theta[None]])
        losses, states = self.unroll(ops.convert_to_tensor(thetas), self.state,
                                     np.full(len(thetas), self.step), length)
        losses = ops.convert_to_numpy(losses)
        self.state = self._one_copy(keras.tree.map_structure(lambda t: t[-1], states))
        self.step += length
        if horizon_ends(self.step, self.horizon):
            self._start(start_seed)
        return weighted_sum(eps, losses[:-1]), losses[:-1], bool(np.isfinite(losses[-1]))

    def arrays(self):
        if self.state is None:
            return {}
        one = keras.tree.map_structure(lambda t: t[0], self.state)
        return {"step": np.asarray(self.step), **tree.to_arrays("state", one)}

    def load_arrays(self, arrays):
        self.state = self._one_copy(tree.from_arrays("state", arrays, self.init_state(0)))
        self.step = int(arrays["step"])


class TruncatedES(Population):
    """Truncated ES over one shared inner state."""

    shard_class = TruncatedESShard

    def mean_loss(self, losses, reported):
        # A carried state gone non-finite makes the reported loss non-finite, so that
        # the caller restarts rather than going on from it.
        return float(np.mean(losses)) if reported[0][2] else float("nan")

    def recover(self, lost, alive):
        if alive:
            state = self.shards.call("arrays", only=alive[:1])[0][0]
            for index in lost:
                self.shards.call("load_arrays", state, only=[index])

    @staticmethod
    def merge(parts):
        return parts[0]  # every shard carries the same shared state

    def split(self, arrays):
        return [arrays] * len(self.ranges)


class PESShard(Shard):
    """Per-particle states, step counts and accumulated perturbations of a range of pairs;
    local order: the pairs' first particles, then their mirrors."""

    def __init__(self, *args, stagger="lockstep", **options):
        super().__init__(*args, **options)
        self.stagger = stagger
        self.states = self.accumulated = self.steps = None

    def start(self, seed, dimension):
        self.states = repeat_state(self.init_state(seed), 2 * len(self.pairs))
        self.accumulated = np.zeros((2 * len(self.pairs), dimension), np.float32)
        offsets = np.zeros(len(self.pairs), np.int64)
        if self.stagger == "breakstep":
            offsets = breakstep_offsets(self.pairs, self.horizon, self.particles // 2)
        self.steps = np.concatenate([offsets, offsets])

    def estimate(self, theta, length, noise_seed, start_seed):
        if self.states is None:
            self.start(start_seed, theta.size)
        eps = self.noise(noise_seed, theta)
        losses, self.states = self.unroll(ops.convert_to_tensor(theta[None] + eps),
                                          self.states, self.steps, length)
        losses = ops.convert_to_numpy(losses)
        self.accumulated, share = pes_share(self.accumulated, eps, losses)
        self.steps = self.steps + length
        finished = horizon_ends(self.steps, self.horizon)
        if finished.any():
            self.states = _reset_where(finished, self.init_state(start_seed), self.states)
            self.accumulated[finished] = 0.0
            self.steps[finished] = 0
        return share, losses

    def arrays(self):
        if self.states is None:
            return {}
        return {"steps": self.steps, "accumulated": self.accumulated,
                **tree.to_arrays("states", self.states)}

    def load_arrays(self, arrays):
        self.steps = np.array(arrays["steps"])
        self.accumulated = np.array(arrays["accumulated"])
        self.states = tree.from_arrays("states", arrays, self.init_state(0))


class PES(Population):
    """Persistent ES: per-particle states, step counts and accumulated perturbations."""

    shard_class = PESShard

    def __init__(self, unroll, init_state, sigma, n_particles, horizon=None,
                 stagger="lockstep", shards=None):
        check_choice("stagger", stagger, STAGGERS)
        if stagger == "breakstep" and horizon is None:
            raise ValueError("breakstep staggers resets at the horizon: set a horizon")
        super().__init__(unroll, init_state, sigma, n_particles, horizon, shards,
                         stagger=stagger)

    def recover(self, lost, alive):
        # Restarted at once (accumulators zero, which keeps the estimate unbiased), so that
        # a checkpoint taken before the next truncation has every particle.
        if self.restart is not None:
            self.shards.call("start", *self.restart, only=lost)

    @staticmethod
    def merge(parts):
        """Shards' arrays (each in local order) in the population's order: every pair's
        first particle, then every mirror."""
        if not parts[0]:
            return {}
        halves = [{name: np.split(value, 2) for name, value in part.items()} for part in parts]
        return {name: np.concatenate([half[name][0] for half in halves]
                                     + [half[name][1] for half in halves])
                for name in parts[0]}

    def split(self, arrays):
        pairs = self.particles // 2
        return [{name: np.concatenate([value[r.start:r.stop],
                                       value[pairs + r.start:pairs + r.stop]])
                 for name, value in arrays.items()} for r in self.ranges]

    # Views of the whole population, in its order (for inspection).

    @property
    def steps(self):
        return self.arrays().get("steps")

    @property
    def accumulated(self):
        return self.arrays().get("accumulated")

    @property
    def states(self):
        arrays = self.arrays()
        return tree.from_arrays("states", arrays, self.init_state(0)) if arrays else None

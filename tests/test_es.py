"""ES and PES meta-gradients on influence balancing: PES is unbiased, truncation is not."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from l2o.estimators.es import (
    PES,
    LocalShards,
    TruncatedES,
    antithetic_noise,
    breakstep_offsets,
    es_gradient,
    horizon_ends,
    pes_share,
    repeat_state,
)
from l2o.streams import Stream, rng, standard_normals
from l2o.systems import influence

THETA = np.array([0.5], np.float32)
K, TRUNCATIONS = 5, 4


def total_loss_gradient(theta, stop_between_truncations):
    """d/dtheta of sum_k L_k over the horizon: exact, or TBPTT (state held fixed at each start)."""
    theta = tf.constant(theta[None])
    state = influence.initial_state()[None]
    gradient = 0.0
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(theta)
        total = 0.0
        for _ in range(TRUNCATIONS):
            if stop_between_truncations:
                state = tf.stop_gradient(state)
            losses, state = influence.SYSTEM.unroll(theta, state, 0, K)
            total += losses[0]
            if stop_between_truncations:
                gradient += tape.gradient(losses[0], theta)[0, 0]
    return float(gradient) if stop_between_truncations else float(
        tape.gradient(total, theta)[0, 0])


def within_three_standard_errors(samples, expected, floor=0.0):
    samples = np.asarray(samples, np.float64)
    error = max(np.std(samples) / np.sqrt(samples.size), floor)
    return abs(np.mean(samples) - expected) < 3 * error


def assert_unbiased_with_power(samples, expected, floor=0.0):
    """The mean of ``samples`` is within 3 standard errors of ``expected``, and the same
    test would reject an estimator 50% too large or too small, or of the wrong sign."""
    assert within_three_standard_errors(samples, expected, floor), (
        np.mean(samples), np.std(samples) / np.sqrt(len(samples)), expected)
    for factor in (-1.0, 0.5, 1.5):
        assert not within_three_standard_errors(factor * np.asarray(samples), expected, floor), \
            f"an estimator off by a factor {factor} would pass too: the test has no power"


def test_antithetic_pairs_draw_the_same_noise_in_any_shard():
    eps = antithetic_noise(7, range(3), (2,), 0.1)
    np.testing.assert_array_equal(eps[:3], -eps[3:])
    assert len(np.unique(eps[:3])) == 6
    first, rest = antithetic_noise(7, range(1), (2,), 0.1), antithetic_noise(7, range(1, 3),
                                                                            (2,), 0.1)
    np.testing.assert_array_equal(eps[:3], np.concatenate([first[:1], rest[:2]]))
    assert not np.allclose(antithetic_noise(8, range(3), (2,), 0.1), eps)
    # Pair j's noise is the stream (truncation seed, j) of PARTICLE_NOISE, as numpy seeds it.
    expected = np.stack([rng(Stream.PARTICLE_NOISE, 7, j).standard_normal(2) for j in range(3)])
    np.testing.assert_array_equal(eps[:3], (0.1 * expected).astype(np.float32))
    with pytest.raises(ValueError, match="even"):
        PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=5)


@pytest.mark.parametrize("keys", [(0,), (3,), (2 ** 31 + 5,), (7, 2 ** 32 + 1), (1, 2, 3, 4)])
def test_many_streams_drawn_at_once_equal_numpy_seeding_each(keys):
    """standard_normals repeats numpy's SeedSequence and PCG64 seeding, vectorised: a change
    in numpy's seeding would show here first."""
    last = [*range(20), 2 ** 32 + 3, 999]  # enough streams to take the vectorised path
    expected = np.stack([rng(Stream.PARTICLE_NOISE, *keys, j).standard_normal((3, 2))
                         for j in last])
    np.testing.assert_array_equal(
        standard_normals(Stream.PARTICLE_NOISE, *keys, last=last, shape=(3, 2)), expected)
    assert standard_normals(Stream.TRUNCATION, *keys, last=[], shape=(2,)).shape == (0, 2)


def test_the_estimators_arithmetic_against_hand_computed_values():
    accumulated = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    eps = np.array([[0.5, 2.0], [-0.5, -2.0]], np.float32)
    losses = np.array([3.0, 1.0])
    accumulated, share = pes_share(accumulated, eps, losses)
    np.testing.assert_array_equal(accumulated, [[1.5, 2.0], [-1.5, -2.0]])
    # 3 (1.5, 2) + 1 (-1.5, -2) = (3, 4)
    np.testing.assert_array_equal(share, [3.0, 4.0])
    # (3, 4) / (2 particles x 0.5^2)
    np.testing.assert_allclose(es_gradient(share, 2, 0.5), [6.0, 8.0])
    np.testing.assert_array_equal(horizon_ends(np.array([3, 4, 5]), 4), [False, True, True])
    np.testing.assert_array_equal(horizon_ends(np.array([3, 400]), None), [False, False])
    # Four pairs over a horizon of 100: pair j starts j * 100 / 4 steps in.
    np.testing.assert_array_equal(breakstep_offsets(range(1, 4), 100, 4), [25, 50, 75])


@pytest.mark.slow
def test_pes_is_unbiased_where_truncated_backprop_is_not():
    """Acceptance: mean PES estimate within 3 standard errors of the exact gradient; TBPTT not."""
    exact = total_loss_gradient(THETA, stop_between_truncations=False)
    tbptt = total_loss_gradient(THETA, stop_between_truncations=True)
    generator = np.random.default_rng(0)
    estimates = []
    for _ in range(200):
        pes = PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=8,
                  horizon=K * TRUNCATIONS)
        estimates.append(sum(float(pes.estimate(THETA, generator, K)[0][0])
                             for _ in range(TRUNCATIONS)))
    assert_unbiased_with_power(estimates, exact)
    error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(tbptt - exact) > 10 * error, (tbptt, exact, error)


@pytest.mark.slow
def test_truncated_es_estimates_the_truncated_gradient():
    """ES shares one state: unbiased for the truncation's own loss, like TBPTT."""
    generator = np.random.default_rng(1)
    first_truncation = []
    for _ in range(200):
        es = TruncatedES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1,
                         n_particles=8)
        first_truncation.append(float(es.estimate(THETA, generator, K)[0][0]))
    theta = tf.constant(THETA[None])
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = influence.SYSTEM.unroll(theta, influence.initial_state()[None], 0, K)[0][0]
    exact = float(tape.gradient(loss, theta)[0, 0])
    assert_unbiased_with_power(first_truncation, exact, floor=1e-6)


def test_pes_resets_at_the_horizon():
    pes = PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=4,
              horizon=2 * K)
    generator = np.random.default_rng(2)
    pes.estimate(THETA, generator, K)
    np.testing.assert_array_equal(pes.steps, [K] * 4)
    assert np.abs(pes.accumulated).min() > 0
    pes.estimate(THETA, generator, K)
    np.testing.assert_array_equal(pes.steps, [0] * 4)
    np.testing.assert_array_equal(pes.accumulated, 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(pes.states),
                                  np.ones((4, influence.DIMENSION)))


def test_breakstep_staggers_the_resets_of_antithetic_pairs():
    pes = PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=8,
              horizon=4 * K, stagger="breakstep")
    generator = np.random.default_rng(3)
    pes.estimate(THETA, generator, K)
    # Pair j started j * T / 4 steps in: pair 3 (at 3K) has just reached T and reset.
    np.testing.assert_array_equal(pes.steps, [K, 2 * K, 3 * K, 0] * 2)
    states = ops.convert_to_numpy(pes.states)
    np.testing.assert_array_equal(states[[3, 7]], 1.0)
    assert np.all(states[[0, 1, 2, 4, 5, 6]] != 1.0)
    np.testing.assert_array_equal(pes.accumulated[[3, 7]], 0.0)
    np.testing.assert_array_equal(pes.accumulated[:4], -pes.accumulated[4:])


@pytest.mark.parametrize("steps", [[0, 0, 0, 0], [0, 5, 0, 5]], ids=["shared", "own-batches"])
def test_vectorised_particles_equal_one_unroll_each(tmp_path, steps):
    """ParticleTruncations: P perturbed DM unrolls in one call == P separate TBPTT unrolls."""
    from conftest import tiny_config

    from l2o.config import resolve
    from l2o.trainer import MetaTrainer

    trainer = MetaTrainer(resolve(tiny_config(tmp_path, training={"estimator": "pes"})))
    truncations, tbptt = trainer.estimators[0].truncations, trainer.estimators[0].tbptt
    state = truncations.init_state(0)
    theta = truncations.flatten(trainer.meta_weights())
    thetas = theta[None] + np.random.default_rng(1).normal(0, 0.1, (4, theta.size))
    states = repeat_state(state, 4)
    losses, after = truncations.unroll(ops.convert_to_tensor(thetas, "float32"), states,
                                       np.array(steps), 5)
    seed = int(state["seed"])
    for p in range(4):
        for variable, value in zip(trainer.meta_variables.values(),
                                   truncations.unflatten(thetas[p])):
            variable.assign(value)
        batches = trainer.problems[0].batches(seed, steps[p], 5)
        expected, params, *_ = tbptt.evaluate(state["params"], state["opt"], batches,
                                              state["initial_loss"])
        np.testing.assert_allclose(float(losses[p]), float(expected), rtol=1e-4)
        for got, want in zip(after["params"], params):
            np.testing.assert_allclose(ops.convert_to_numpy(got)[p], want, rtol=1e-4,
                                       atol=1e-6)
    assert len(set(np.round(ops.convert_to_numpy(losses), 5))) == 4


class LosingShards(LocalShards):
    """Two shards in this process; ``lose[method]`` names a shard that is recreated empty
    just before that method's next call and reported lost, as a killed worker is."""

    count = 2

    def __init__(self, unroll, init_state):
        super().__init__(unroll, init_state)
        self.lose = {}

    def create(self, shard_class, options, ranges):
        self.made = (shard_class, options, ranges)
        super().create(shard_class, options, ranges)

    def call(self, method, *args, only=None):
        indices = list(range(self.count) if only is None else only)
        victim = self.lose.pop(method, None)
        if victim not in indices:
            return super().call(method, *args, only=only)
        shard_class, options, ranges = self.made
        self.shards[victim] = shard_class(self.unroll, self.init_state, pairs=ranges[victim],
                                          **options)
        return ([None if index == victim else getattr(self.shards[index], method)(*args)
                 for index in indices], [victim])


@pytest.mark.parametrize("moment", ["estimate", "arrays"])
def test_a_pes_shard_lost_before_a_checkpoint_is_restarted_and_checkpointed(moment):
    """A shard lost in the last truncation before a checkpoint, or found lost by the
    checkpoint itself: its particles restart (step 0, nothing accumulated), the other
    shard's particles are untouched, and the arrays load back onto a fresh population."""
    shards = LosingShards(influence.SYSTEM.unroll, influence.initial_state)
    pes = PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=4,
              horizon=10 * K, shards=shards)
    generator = np.random.default_rng(3)
    pes.estimate(THETA, generator, K)
    shards.lose[moment] = 0
    pes.estimate(THETA, generator, K)
    arrays = pes.arrays()
    # Population order: pair 0, pair 1, then their mirrors; shard 0 holds pair 0.
    np.testing.assert_array_equal(arrays["steps"], [0, 2 * K, 0, 2 * K])
    np.testing.assert_array_equal(arrays["accumulated"][[0, 2]], 0.0)
    assert np.abs(arrays["accumulated"][[1, 3]]).min() > 0
    fresh = PES(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1, n_particles=4,
                horizon=10 * K)
    fresh.load_arrays(arrays)
    for name, value in fresh.arrays().items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)

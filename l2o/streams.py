"""Every random stream of the package, named in one place.

A stream is a numpy Generator keyed by its name and integer keys. The entropy
is ``[tag, number of keys, *keys]``: distinct tags keep streams apart, and the
key count keeps (s, 1) apart from (s, 1, 0, 0), which numpy's zero padding of
short entropy would otherwise make the same stream. Everything a run draws
is a function of these keys, so a resumed run repeats an uninterrupted one.
"""

import enum

import numpy as np


class Stream(enum.IntEnum):
    # Problems: initial parameters, data order and fixed coefficients (quadratics).
    PROBLEM_INIT = 1
    PROBLEM_DATA = 2
    PROBLEM_COEFFICIENTS = 3
    # Meta-training: a trajectory's seed, each truncation's draws (unroll length,
    # imitation, ES noise), the seed of a restarted trajectory, and the random
    # parameter scaling of a trajectory.
    TRAJECTORY = 4
    TRUNCATION = 5
    RESTART = 6
    PARAMETER_SCALES = 7
    # PIO: validation sampling noise.
    PIO_VALIDATION = 8
    # Learned-rule state drawn at initialisation (ScaleBasic's per-coordinate rates).
    RULE_STATE = 9
    # Task families: the member task a trajectory trains on.
    TASK_SAMPLE = 10
    # Teacher-student regression: the teacher network of an instance.
    TEACHER_STUDENT = 11
    # ES/PES: the perturbation of one antithetic pair in one truncation, keyed by the
    # truncation's noise seed and the pair's index, so that a pair's noise is the same
    # whichever process (or distributed worker) draws it.
    PARTICLE_NOISE = 12
    # A learned optimiser's initial meta-weights: one initializer's draw, keyed by its seed.
    META_WEIGHTS = 13
    # The validation minibatch a validation meta-objective scores at a (seed, step).
    VALIDATION_DATA = 14


def rng(stream, *keys):
    """The numpy Generator of ``stream`` at integer ``keys``."""
    entropy = [int(Stream(stream)), len(keys), *(int(k) % (2 ** 32) for k in keys)]
    return np.random.default_rng(entropy)


def seed_from(generator):
    """A fresh 31-bit integer seed drawn from ``generator``."""
    return int(generator.integers(2 ** 31))


def standard_normals(stream, *keys, last, shape):
    """``[rng(stream, *keys, j).standard_normal(shape) for j in last]`` stacked, as float64.

    The same numbers, without building a SeedSequence and a Generator for each
    ``j``: numpy's seeding of ``rng`` (``SeedSequence`` entropy mixing, then
    PCG64's seeding from four state words) runs once, vectorised over ``last``,
    and one Generator is moved to each stream's state in turn (below a few
    streams, where that costs more, each Generator is built as ``rng`` builds it).
    ES and PES draw a stream per antithetic pair.
    """
    last = np.asarray(last, np.int64).reshape(-1)
    if len(last) < _FEW_STREAMS:
        return np.stack([rng(stream, *keys, j).standard_normal(shape) for j in last]) \
            if len(last) else np.zeros((0, *tuple(shape)))
    # Each row is the entropy rng(stream, *keys, j) hands numpy: [tag, key count, keys].
    words = np.empty((len(last), len(keys) + 3), np.uint64)
    words[:, :-1] = [int(Stream(stream)), len(keys) + 1, *(int(k) % 2 ** 32 for k in keys)]
    words[:, -1] = last % 2 ** 32
    generator = np.random.Generator(np.random.PCG64(0))
    draws = np.empty((len(last), *tuple(shape)))
    for row, (seed, increment) in enumerate(_pcg64_seeds(_seed_sequence_words(words))):
        generator.bit_generator.state = {
            "bit_generator": "PCG64", "state": _pcg64_state(seed, increment),
            "has_uint32": 0, "uinteger": 0}
        draws[row] = generator.standard_normal(shape)
    return draws


# Below this many streams, a Generator each costs less than the vectorised seeding's fixed
# cost (benchmarks/systems/noise_draw.py).
_FEW_STREAMS = 16
# numpy's SeedSequence (pool of four 32-bit words; O'Neill's seed_seq mixing): its
# hashing and mixing constants, and the 32-bit shift of both.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _POOL = 0xCA01F9DD, 0x4973F715, 16, 4
_WORD = 0xFFFFFFFF
# PCG64's 128-bit LCG multiplier.
_PCG_MULTIPLIER = 0x2360ED051FC65DA44385DF649FCCF645
_MASK128 = (1 << 128) - 1


def _seed_sequence_hash(constant, multiplier):
    """numpy's SeedSequence hash of 32-bit words (in uint64 arrays): each call mixes a word
    with a running constant, which moves on by ``multiplier`` at every call."""

    def hash_words(value):
        nonlocal constant
        value = value ^ np.uint64(constant)
        constant = constant * multiplier & _WORD
        value = value * np.uint64(constant) & np.uint64(_WORD)
        return value ^ (value >> np.uint64(_XSHIFT))

    return hash_words


def _seed_sequence_words(entropy):
    """``SeedSequence(row).generate_state(8, uint32)`` of each row of ``entropy`` (32-bit
    words in uint64), vectorised over rows."""
    hashmix = _seed_sequence_hash(_INIT_A, _MULT_A)

    def mix(x, y):
        # uint64 wraps around on the subtraction; the mask keeps it modulo 2**32.
        result = (np.uint64(_MIX_MULT_L) * x - np.uint64(_MIX_MULT_R) * y) & np.uint64(_WORD)
        return result ^ (result >> np.uint64(_XSHIFT))

    count = entropy.shape[1]
    zero = np.zeros(len(entropy), np.uint64)
    pool = [hashmix(entropy[:, i] if i < count else zero) for i in range(_POOL)]
    for source in range(_POOL):
        for target in range(_POOL):
            if source != target:
                pool[target] = mix(pool[target], hashmix(pool[source]))
    for source in range(_POOL, count):
        for target in range(_POOL):
            pool[target] = mix(pool[target], hashmix(entropy[:, source]))
    output = _seed_sequence_hash(_INIT_B, _MULT_B)
    return [output(pool[index % _POOL]) for index in range(8)]


def _pcg64_seeds(words):
    """(128-bit seed, 128-bit increment) of each row, from its eight state words: four
    uint64 (little-endian pairs of 32-bit words), the first two the seed, the last two
    the increment, high word first."""
    longs = [[int(low) | int(high) << 32 for low, high in zip(words[2 * k], words[2 * k + 1])]
             for k in range(4)]
    for first, second, third, fourth in zip(*longs):
        yield first << 64 | second, third << 64 | fourth


def _pcg64_state(seed, increment):
    """PCG64's state after seeding with ``seed`` and ``increment`` (pcg's srandom)."""
    increment = (increment << 1 | 1) & _MASK128
    state = increment  # one step from state 0
    state = (state + seed) & _MASK128
    state = (state * _PCG_MULTIPLIER + increment) & _MASK128
    return {"state": state, "inc": increment}

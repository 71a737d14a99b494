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

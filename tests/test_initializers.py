"""Meta-weight initialisers drawn with numpy: Keras's distributions, the same on every backend."""

import keras
import numpy as np
import pytest

from l2o.optimizers.cells import seeded_initializer


def test_glorot_uniform_fills_its_bound_and_repeats_per_seed():
    shape = (300, 200)
    values = seeded_initializer("glorot_uniform", 4)(shape)
    limit = np.sqrt(6.0 / (300 + 200))
    assert values.dtype == np.float32 and values.shape == shape
    assert np.max(np.abs(values)) <= limit
    assert np.max(np.abs(values)) > 0.99 * limit
    assert np.var(values) == pytest.approx(limit ** 2 / 3, rel=0.02)
    np.testing.assert_array_equal(values, seeded_initializer("glorot_uniform", 4)(shape))
    assert not np.array_equal(values, seeded_initializer("glorot_uniform", 5)(shape))


def test_he_normal_is_truncated_at_two_deviations_with_keras_variance():
    values = seeded_initializer("he_normal", 1)((400, 300)).astype(np.float64)
    variance = 2.0 / 400
    stddev = np.sqrt(variance) / 0.87962566103423978
    assert np.max(np.abs(values)) <= 2 * stddev + 1e-7
    assert np.var(values) == pytest.approx(variance, rel=0.02)


@pytest.mark.parametrize("shape", [(20, 80), (80, 20)])
def test_orthogonal_has_orthonormal_rows_or_columns(shape):
    values = seeded_initializer(keras.initializers.Orthogonal(gain=2.0), 3)(shape)
    small = values.T @ values if shape[0] >= shape[1] else values @ values.T
    np.testing.assert_allclose(small, 4.0 * np.eye(min(shape)), atol=1e-5)


def test_configured_parameters_and_deterministic_initializers():
    normal = seeded_initializer(keras.initializers.RandomNormal(mean=1.0, stddev=0.5), 0)((20000,))
    assert np.mean(normal) == pytest.approx(1.0, abs=0.02)
    assert np.std(normal) == pytest.approx(0.5, rel=0.02)
    uniform = seeded_initializer(keras.initializers.RandomUniform(-3.0, -2.0), 0)((1000,))
    assert uniform.min() >= -3.0 and uniform.max() <= -2.0
    np.testing.assert_array_equal(seeded_initializer("ones", 0)((2, 3)), np.ones((2, 3)))


def test_an_initializer_without_a_numpy_draw_is_refused():
    class Jittered(keras.initializers.RandomNormal):
        """A user's random initializer: its draw has no numpy counterpart here."""

    with pytest.raises(ValueError, match="no backend-neutral draw"):
        seeded_initializer(Jittered(), 0)

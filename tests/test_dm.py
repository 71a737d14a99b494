"""DM equations by hand and against Keras' own LSTM cell."""

import keras
import numpy as np
import pytest
from keras import ops

import l2o
from l2o.optimizers import DMRule
from l2o.optimizers.cells import lstm
from l2o.optimizers.dm import log_sign_preprocess


def test_preprocessing_matches_appendix_a():
    p = 10.0
    grads = np.array([1.0, -0.5, 1e-6, 0.0, np.exp(-p) * 1.01], np.float32)
    got = ops.convert_to_numpy(log_sign_preprocess(ops.convert_to_tensor(grads), p))
    expected = [[0.0, 1.0], [np.log(0.5) / p, -1.0], [-1.0, np.exp(p) * 1e-6], [-1.0, 0.0],
                [np.log(np.exp(-p) * 1.01) / p, 1.0]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_lstm_cell_matches_keras():
    rule = DMRule(layers=[6])
    weights = rule.init_meta_weights(seed=3)
    cell = keras.layers.LSTMCell(6)
    cell.build((None, 2))
    cell.set_weights([weights["lstm_0/kernel"], weights["lstm_0/recurrent_kernel"],
                      weights["lstm_0/bias"]])
    generator = np.random.default_rng(0)
    x, h, c = (generator.standard_normal(s).astype(np.float32) for s in ((5, 2), (5, 6), (5, 6)))
    expected_h, (_, expected_c) = cell(x, [h, c])
    got_h, got_c = lstm({k: ops.convert_to_tensor(v) for k, v in weights.items()}, "lstm_0",
                        x, h, c)
    np.testing.assert_allclose(ops.convert_to_numpy(got_h), expected_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(got_c), expected_c, rtol=1e-5, atol=1e-6)


def test_unit_forget_bias_and_layers():
    weights = DMRule(layers=[4, 3]).init_meta_weights(seed=0)
    assert weights["lstm_0/kernel"].shape == (2, 16)
    assert weights["lstm_1/kernel"].shape == (4, 12)
    assert weights["output/kernel"].shape == (3, 1)
    np.testing.assert_array_equal(weights["lstm_0/bias"][4:8], 1.0)
    np.testing.assert_array_equal(weights["lstm_0/bias"][:4], 0.0)


def test_load_optimizer_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        l2o.load_optimizer(str(tmp_path))

"""Problems: deterministic streams, data loading and their Keras twins."""

import keras
import numpy as np
import pytest
from keras import ops

from l2o.config import ConfigError
from l2o.problems import ConvClassifier, MLPClassifier, Quadratic, build, datasets


def test_quadratic_loss_by_hand():
    problem = Quadratic(dim=2)
    w, y = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([1.0, -1.0])
    assert float(problem.loss([np.array([1.0, 1.0])], (w, y))) == pytest.approx(4.0 + 4.0)


def test_quadratic_model_matches_loss():
    problem = Quadratic()
    params = problem.init(3)
    w, y = (b[0] for b in problem.batches(3, 0, 1))
    model = problem.build_model(params)
    prediction = ops.convert_to_numpy(model(w[None]))[0]
    assert np.sum((prediction - y) ** 2) == pytest.approx(float(problem.loss(params, (w, y))),
                                                          rel=1e-5)


@pytest.mark.parametrize("problem", [
    MLPClassifier(layers=[7], dataset="digits", batch_size=16),
    ConvClassifier(filters=[4, 6], dataset="digits", batch_size=16)])
def test_classifier_stream_is_a_function_of_seed_and_step(problem):
    whole = problem.batches(seed=1, start=0, count=120)  # crosses a pass over the data
    part = problem.batches(seed=1, start=100, count=20)
    for a, b in zip(whole, part):
        np.testing.assert_array_equal(a[100:], b)
    other = problem.batches(seed=2, start=0, count=1)
    assert not np.array_equal(whole[1][0], other[1][0])


@pytest.mark.parametrize("problem", [
    MLPClassifier(layers=[7, 5], activation="tanh", dataset="digits", batch_size=16),
    ConvClassifier(filters=[4, 6], dataset="digits", batch_size=16)])
def test_keras_model_computes_the_same_loss(problem):
    params = problem.init(0)
    images, labels = (b[0] for b in problem.batches(0, 0, 1))
    model = problem.build_model(params)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, model(images))
    assert float(keras_loss) == pytest.approx(float(problem.loss(params, (images, labels))),
                                              rel=1e-5)
    assert [tuple(v.shape) for v in model.trainable_variables] == [p.shape for p in params]


def test_idx_folder_split(mnist_folder):
    data = datasets.load(mnist_folder, validation_split=0.2)
    assert data["x_train"].shape == (8000, 28, 28, 1)
    assert data["x_val"].shape == (2000, 28, 28, 1)
    assert data["classes"] == 10
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() == 1.0
    again = datasets.load(mnist_folder, validation_split=0.2)
    np.testing.assert_array_equal(data["y_val"], again["y_val"])


def test_missing_folder_error_names_the_key():
    spec = {"target": "mlp_classifier", "args": [],
            "kwargs": {"dataset": "./no/such/folder"}}
    with pytest.raises(ConfigError, match="problems/0/kwargs/dataset: no such folder"):
        build(spec)


def test_batch_size_larger_than_data_is_rejected():
    spec = {"target": "mlp_classifier", "args": [], "kwargs": {"batch_size": 100000}}
    with pytest.raises(ConfigError, match="problems/2/kwargs/batch_size: must be at most the"):
        build(spec, "problems/2")

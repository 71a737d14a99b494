"""The PIO paper's optimisation tasks beside MNIST: the Carrillo function and two moons."""

import keras
import numpy as np
from keras import ops

from l2o.problems.base import Problem
from l2o.problems.classifiers import MLPClassifier
from l2o.registry import PROBLEMS
from l2o.streams import Stream, rng
from l2o.validation import check_range


@PROBLEMS.register("carrillo")
class Carrillo(Problem):
    """A shifted Rastrigin function (Carrillo et al. 2018), used by PIO:

        f(y) = (1/d) sum_i [ (y_i - B)^2 - 10 cos(2 pi (y_i - B)) + 10 ] + C,

    global minimum C at y = B, with a local minimum near every integer offset
    from B (each one coordinate away costs about 1/d). There is no data: the
    "batches" are placeholders, there is no validation set (the test loss is
    f itself), and y starts from N(0, I) per seed.
    """

    def __init__(self, dim=2, shift=0.0, offset=0.0):
        self.dim, self.shift, self.offset = int(dim), float(shift), float(offset)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        check_range(f"{prefix}dim", kwargs["dim"], 0)

    def init(self, seed):
        return [rng(Stream.PROBLEM_INIT, seed).standard_normal((self.dim,)).astype(np.float32)]

    def value(self, y):
        centred = y - self.shift
        return ops.mean(ops.square(centred) - 10.0 * ops.cos(2.0 * np.pi * centred) + 10.0,
                        axis=-1) + self.offset

    def loss(self, params, batch):
        return self.value(params[0])

    def batches(self, seed, start, count):
        return (np.zeros((count, 1), np.float32),)

    def build_model(self, params):
        model = keras.Sequential([keras.Input((1,)), CarrilloLayer(self)])
        model.set_weights(params)
        return model


class CarrilloLayer(keras.layers.Layer):
    """y as a Keras weight; outputs f(y) for every input row (fit with ``loss=identity``)."""

    def __init__(self, problem, **kwargs):
        super().__init__(**kwargs)
        self.problem = problem
        self.y = self.add_weight(shape=(problem.dim,), initializer="random_normal", name="y")

    def call(self, inputs):
        return ops.zeros_like(inputs[:, 0]) + self.problem.value(self.y)


def identity(y_true, y_pred):
    """The loss for models whose output already is the loss."""
    return y_pred


@PROBLEMS.register("two_moons")
class TwoMoons(MLPClassifier):
    """Binary MLP (2-``layers``-1, one logit, sigmoid cross-entropy) on scikit-learn's moons."""

    def __init__(self, layers=(10,), activation="tanh", batch_size=100, shuffle_buffer=1000,
                 validation_split=0.2):
        super().__init__(layers, activation, "moons", batch_size, shuffle_buffer, None,
                         validation_split)
        self.classes = 1

    def loss(self, params, batch):
        points, labels = batch
        logits = self.logits(params, points)[:, 0]
        return ops.mean(ops.binary_crossentropy(ops.cast(labels, logits.dtype), logits,
                                                from_logits=True))

    def accuracy(self, params, batch):
        points, labels = batch
        predictions = ops.cast(self.logits(params, points)[:, 0] > 0, "int32")
        return ops.mean(ops.cast(predictions == ops.cast(labels, "int32"), "float32"))

"""The quadratic of Andrychowicz et al. (2016), section 3.1."""

import keras
import numpy as np
from keras import ops

from l2o.problems.base import Problem
from l2o.registry import PROBLEMS
from l2o.streams import Stream, rng
from l2o.validation import ConfigError, check_range


@PROBLEMS.register("quadratic")
class Quadratic(Problem):
    """f(x) = ||W x - y||^2 with W (dim x dim) and y drawn i.i.d. N(0, 1) per instance.

    The instance (W, y) is the "batch": every step of stream ``seed`` carries
    the same W and y, and ``init(seed)`` draws x ~ N(0, 1) for that instance.

    ``condition_number`` k makes the instance ill-conditioned: W = U diag(s) V^T
    with U, V random rotations and s^2 log-spaced from 1 to k, so that the
    Hessian 2 W^T W has eigenvalues 2 (1 .. k) and condition number k (null: W
    Gaussian, as in the paper). ``loss_scale`` multiplies f.
    """

    def __init__(self, dim=10, condition_number=None, loss_scale=1.0):
        self.dim = int(dim)
        self.condition_number = None if condition_number is None else float(condition_number)
        self.loss_scale = float(loss_scale)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        check_range(f"{prefix}dim", kwargs["dim"], 0)
        number = kwargs["condition_number"]
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                   or not 1.0 <= number < float("inf")):
            raise ConfigError(f"{prefix}condition_number: must be null or a finite number "
                              f"at least 1, got {number!r}")
        check_range(f"{prefix}loss_scale", kwargs["loss_scale"], 0.0)

    def _instance(self, seed):
        generator = rng(Stream.PROBLEM_COEFFICIENTS, seed)
        if self.condition_number is None:
            w = generator.standard_normal((self.dim, self.dim))
        else:
            singular = np.sqrt(np.geomspace(1.0, self.condition_number, self.dim))
            w = _rotation(generator, self.dim) * singular @ _rotation(generator, self.dim).T
        return (w.astype(np.float32),
                generator.standard_normal((self.dim,)).astype(np.float32))

    def init(self, seed):
        return [rng(Stream.PROBLEM_INIT, seed).standard_normal((self.dim,)).astype(np.float32)]

    def loss(self, params, batch):
        w, y = batch
        return self.loss_scale * ops.sum(ops.square(ops.matmul(w, params[0]) - y))

    def batches(self, seed, start, count):
        w, y = self._instance(seed)
        return np.broadcast_to(w, (count,) + w.shape), np.broadcast_to(y, (count,) + y.shape)

    def build_model(self, params):
        model = QuadraticModel(self.dim)
        model.build((None, self.dim, self.dim))
        model.set_weights(params)
        return model


def _rotation(generator, dim):
    """A Haar-random orthogonal matrix (QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(generator.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


class QuadraticModel(keras.Model):
    """x as a Keras weight; called on W it gives W x; fit with loss ``sum_squared_error``."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.x = self.add_weight(shape=(dim,), initializer="random_normal", name="x")

    def call(self, w):
        return ops.einsum("bij,j->bi", w, self.x)


def sum_squared_error(y_true, y_pred):
    return ops.sum(ops.square(y_pred - y_true), axis=-1)

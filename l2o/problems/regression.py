"""Teacher-student regression: a student MLP fits a random teacher MLP under squared error."""

import keras
import numpy as np
from keras import ops

from l2o.problems.base import Problem, dense_shapes, dense_stack, glorot_uniform
from l2o.registry import PROBLEMS
from l2o.streams import Stream, rng
from l2o.validation import ConfigError, check_keras_name, check_range, check_units


@PROBLEMS.register("teacher_student")
class TeacherStudent(Problem):
    """Inputs x ~ N(0, I) of ``input_dim``; targets t(x) + ``noise`` * N(0, I).

    The teacher t is an MLP (``teacher_hidden`` layers, ``activation``, a
    linear output of ``output_dim``) with weights and biases ~ N(0, 1/fan_in),
    drawn afresh for each stream ``seed``, as the quadratic draws its instance:
    every trajectory fits its own teacher. The student is an MLP with
    ``hidden`` layers, initialised as Keras initialises Dense layers; the loss
    is ``loss_scale`` times the mean squared error over the batch and outputs.
    Every batch is fresh draws, so the training loss already estimates the
    population loss: there is no validation set.
    """

    def __init__(self, input_dim=8, output_dim=1, hidden=(32,), teacher_hidden=(16,),
                 activation="tanh", noise=0.0, batch_size=32, loss_scale=1.0):
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.hidden = [int(u) for u in hidden]
        self.teacher_hidden = [int(u) for u in teacher_hidden]
        self.activation, self.noise = activation, float(noise)
        self.batch_size, self.loss_scale = int(batch_size), float(loss_scale)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        for key in ("input_dim", "output_dim", "batch_size"):
            check_range(f"{prefix}{key}", kwargs[key], 0)
        check_units(f"{prefix}hidden", kwargs["hidden"])
        check_units(f"{prefix}teacher_hidden", kwargs["teacher_hidden"])
        check_keras_name(f"{prefix}activation", kwargs["activation"], "activations")
        if not 0.0 <= kwargs["noise"] < float("inf"):
            raise ConfigError(f"{prefix}noise: must be finite and non-negative, "
                              f"got {kwargs['noise']!r}")
        check_range(f"{prefix}loss_scale", kwargs["loss_scale"], 0.0)

    def _sizes(self, hidden):
        return [self.input_dim] + hidden + [self.output_dim]

    def teacher(self, seed):
        """The teacher of stream ``seed``: kernel and bias arrays, as the student's params."""
        generator, sizes = rng(Stream.TEACHER_STUDENT, seed), self._sizes(self.teacher_hidden)
        # Kernel and bias of layer k both have fan-in sizes[k].
        return [(generator.standard_normal(shape) / np.sqrt(sizes[index // 2])).astype(np.float32)
                for index, shape in enumerate(dense_shapes(sizes))]

    def init(self, seed):
        return glorot_uniform(dense_shapes(self._sizes(self.hidden)), seed)

    def loss(self, params, batch):
        inputs, targets = batch
        return self.loss_scale * ops.mean(ops.square(
            dense_stack(params, inputs, self.activation) - targets))

    def batches(self, seed, start, count):
        inputs, noise = [], []
        for step in range(start, start + count):
            generator = rng(Stream.PROBLEM_DATA, seed, step)
            inputs.append(generator.standard_normal((self.batch_size, self.input_dim)))
            noise.append(generator.standard_normal((self.batch_size, self.output_dim)))
        inputs = np.stack(inputs).astype(np.float32)
        clean = ops.convert_to_numpy(dense_stack(
            self.teacher(seed), inputs.reshape(-1, self.input_dim), self.activation))
        targets = clean.reshape(count, self.batch_size, self.output_dim) \
            + self.noise * np.stack(noise)
        return inputs, targets.astype(np.float32)

    def build_model(self, params):
        """The student; its loss is ``loss_scale`` times Keras's ``mean_squared_error``."""
        model = keras.Sequential(
            [keras.Input((self.input_dim,))]
            + [keras.layers.Dense(u, activation=self.activation) for u in self.hidden]
            + [keras.layers.Dense(self.output_dim)])
        model.set_weights(params)
        return model

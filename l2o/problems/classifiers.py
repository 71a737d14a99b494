"""Small image classifiers: an MLP and a convolutional net, trained with cross-entropy."""

import itertools

import keras
import numpy as np
from keras import ops

from l2o.problems import datasets
from l2o.problems.base import Problem, dense_shapes, dense_stack, glorot_uniform
from l2o.registry import PROBLEMS
from l2o.streams import Stream, rng
from l2o.validation import ConfigError, check_keras_name, check_range, check_units


class Classifier(Problem):
    """Shared data handling, loss and Keras twin of the classifiers.

    Batches: each pass over the training data is a fresh permutation drawn
    from (seed, pass), shuffled within windows of ``shuffle_buffer`` examples
    (1: no shuffling); the last incomplete batch of a pass is dropped.
    ``image_size`` s resamples the images to s x s by area averaging (null: as
    stored); ``loss_scale`` multiplies the loss. ``train_examples`` n keeps the
    first n training examples of the split (a fixed random subset: small
    enough, a task overfits within a meta-training horizon); ``label_noise`` p
    replaces a fixed random fraction p of the training labels by classes drawn
    uniformly. The validation split is never changed, so it measures what
    generalises.
    """

    def __init__(self, activation, dataset, batch_size, shuffle_buffer, data_dir,
                 validation_split, image_size=None, loss_scale=1.0, train_examples=None,
                 label_noise=0.0):
        self.activation = activation
        self.batch_size = int(batch_size)
        self.shuffle_buffer = int(shuffle_buffer)
        self.loss_scale = float(loss_scale)
        self.data = datasets.load(dataset, data_dir, validation_split)
        if image_size is not None:
            if self.data["x_train"].ndim != 4:
                raise datasets.DataError(f"image_size: {dataset!r} holds points, not images; "
                                         f"leave image_size null")
            self.data = {**self.data, **{key: datasets.resize(self.data[key], image_size)
                                         for key in ("x_train", "x_val")}}
        self.classes = self.data["classes"]
        if train_examples is not None:
            if train_examples > len(self.data["y_train"]):
                raise datasets.DataError(
                    f"train_examples: must be at most the {len(self.data['y_train'])} "
                    f"training examples of {dataset!r}, got {train_examples}")
            self.data = {**self.data, "x_train": self.data["x_train"][:train_examples],
                         "y_train": self.data["y_train"][:train_examples]}
        if label_noise > 0:
            generator = rng(Stream.PROBLEM_COEFFICIENTS, 0)
            labels = self.data["y_train"].copy()
            noisy = generator.random(len(labels)) < label_noise
            labels[noisy] = generator.integers(0, self.classes, int(noisy.sum()))
            self.data = {**self.data, "y_train": labels}
        self.input_shape = self.data["x_train"].shape[1:]
        if self.batch_size > len(self.data["y_train"]):
            raise datasets.DataError(
                f"batch_size: must be at most the {len(self.data['y_train'])} "
                f"training examples of {dataset!r}, got {batch_size}")
        self._permutations = {}

    @classmethod
    def validate_config(cls, prefix, kwargs):
        check_keras_name(f"{prefix}activation", kwargs["activation"], "activations")
        check_range(f"{prefix}batch_size", kwargs["batch_size"], 0)
        check_range(f"{prefix}shuffle_buffer", kwargs["shuffle_buffer"], 0)
        check_range(f"{prefix}validation_split", kwargs["validation_split"], 0.0, 0.9)
        if kwargs.get("data_dir") is not None and not isinstance(kwargs["data_dir"], str):
            raise ConfigError(f"{prefix}data_dir: must be a path or null")
        size = kwargs.get("image_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"{prefix}image_size: must be null or a positive int, got {size!r}")
        check_range(f"{prefix}loss_scale", kwargs.get("loss_scale", 1.0), 0.0)
        examples = kwargs.get("train_examples")
        if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int)
                                     or examples < 1):
            raise ConfigError(f"{prefix}train_examples: must be null or a positive int, "
                              f"got {examples!r}")
        noise = kwargs.get("label_noise", 0.0)
        if not 0.0 <= noise < 1.0:
            raise ConfigError(f"{prefix}label_noise: must be at least 0 and below 1, "
                              f"got {noise!r}")

    def param_shapes(self):
        raise NotImplementedError

    def logits(self, params, images):
        raise NotImplementedError

    def keras_layers(self):
        raise NotImplementedError

    def init(self, seed):
        return glorot_uniform(self.param_shapes(), seed)

    def loss(self, params, batch):
        images, labels = batch
        return self.loss_scale * ops.mean(ops.sparse_categorical_crossentropy(
            labels, self.logits(params, images), from_logits=True))

    def accuracy(self, params, batch):
        images, labels = batch
        predictions = ops.argmax(self.logits(params, images), axis=-1)
        return ops.mean(ops.cast(predictions == ops.cast(labels, predictions.dtype), "float32"))

    def _permutation(self, seed, data_pass):
        if (seed, data_pass) not in self._permutations:
            if len(self._permutations) > 8:
                self._permutations.clear()
            self._permutations[(seed, data_pass)] = self._draw_permutation(seed, data_pass)
        return self._permutations[(seed, data_pass)]

    def _draw_permutation(self, seed, data_pass):
        count = len(self.data["y_train"])
        order = np.arange(count)
        if self.shuffle_buffer > 1:
            generator = rng(Stream.PROBLEM_DATA, seed, data_pass)
            window = min(self.shuffle_buffer, count)
            order = generator.permutation(count) if window >= count else np.concatenate(
                [generator.permutation(order[k:k + window]) for k in range(0, count, window)])
        return order

    def steps_per_pass(self):
        return len(self.data["y_train"]) // self.batch_size

    def batches(self, seed, start, count):
        per_pass = self.steps_per_pass()
        indices = np.concatenate([
            self._permutation(seed, step // per_pass)[
                (step % per_pass) * self.batch_size:(step % per_pass + 1) * self.batch_size]
            for step in range(start, start + count)])
        shape = (count, self.batch_size)
        return (self.data["x_train"][indices].reshape(shape + self.input_shape),
                self.data["y_train"][indices].reshape(shape))

    def validation_batch(self):
        return self.data["x_val"], self.data["y_val"]

    @classmethod
    def offers(cls, kwargs):
        return frozenset({"validation", "accuracy"})

    def build_model(self, params):
        model = keras.Sequential([keras.Input(self.input_shape)] + self.keras_layers())
        model.set_weights(params)
        return model


@PROBLEMS.register("mlp_classifier")
class MLPClassifier(Classifier):
    """Fully connected classifier: hidden ``layers`` with ``activation``, then logits."""

    def __init__(self, layers=(20,), activation="sigmoid", dataset="digits", batch_size=128,
                 shuffle_buffer=16384, data_dir=None, validation_split=0.2, image_size=None,
                 loss_scale=1.0, train_examples=None,
                 label_noise=0.0):
        self.layers = [int(u) for u in layers]
        super().__init__(activation, dataset, batch_size, shuffle_buffer, data_dir,
                         validation_split, image_size, loss_scale,
                         train_examples, label_noise)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        super().validate_config(prefix, kwargs)
        check_units(f"{prefix}layers", kwargs["layers"])

    def param_shapes(self):
        return dense_shapes([int(np.prod(self.input_shape))] + self.layers + [self.classes])

    def logits(self, params, images):
        return dense_stack(params, ops.reshape(images, (ops.shape(images)[0], -1)),
                           self.activation)

    def keras_layers(self):
        return ([keras.layers.Flatten()]
                + [keras.layers.Dense(u, activation=self.activation) for u in self.layers]
                + [keras.layers.Dense(self.classes)])


@PROBLEMS.register("conv_classifier")
class ConvClassifier(Classifier):
    """Strided 'same' convolutions (one per entry of ``filters``), global average pool, logits."""

    def __init__(self, filters=(16, 32), kernel_size=3, activation="relu", dataset="digits",
                 batch_size=128, shuffle_buffer=16384, data_dir=None, validation_split=0.2,
                 image_size=None, loss_scale=1.0, train_examples=None,
                 label_noise=0.0):
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        super().__init__(activation, dataset, batch_size, shuffle_buffer, data_dir,
                         validation_split, image_size, loss_scale,
                         train_examples, label_noise)

    @classmethod
    def validate_config(cls, prefix, kwargs):
        super().validate_config(prefix, kwargs)
        check_units(f"{prefix}filters", kwargs["filters"])
        check_range(f"{prefix}kernel_size", kwargs["kernel_size"], 0)

    def param_shapes(self):
        channels = [self.input_shape[-1]] + self.filters
        shapes = [shape for c_in, c_out in itertools.pairwise(channels)
                  for shape in ((self.kernel_size, self.kernel_size, c_in, c_out), (c_out,))]
        return shapes + [(channels[-1], self.classes), (self.classes,)]

    def logits(self, params, images):
        activation = keras.activations.get(self.activation)
        hidden = images
        for index in range(0, len(params) - 2, 2):
            hidden = activation(ops.conv(hidden, params[index], strides=2, padding="same")
                                + params[index + 1])
        return ops.matmul(ops.mean(hidden, axis=(1, 2)), params[-2]) + params[-1]

    def keras_layers(self):
        return ([keras.layers.Conv2D(f, self.kernel_size, strides=2, padding="same",
                                     activation=self.activation) for f in self.filters]
                + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(self.classes)])

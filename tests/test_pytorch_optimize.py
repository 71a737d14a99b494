"""pytorch-optimize's names in l2o.blackbox: the Model wrapper and its
SamplingStrategy, Objective, Samples and gradient_step do what they do there, by delegating
to the ESOptimizer."""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from l2o.blackbox import ESOptimizer, Model, Objective, Samples, SamplingStrategy, vectorized


def three_layer_net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])


def negative_squared_error(net, samples):
    outputs = ops.convert_to_numpy(net(samples.inputs))
    return -float(np.mean((outputs - samples.targets) ** 2))


class NegativeSquaredError(Objective):
    def __call__(self, model, samples):
        return negative_squared_error(model.forward, samples)


@dataclasses.dataclass
class BatchSamples(Samples):
    inputs: np.ndarray
    targets: np.ndarray


def batch(seed=0):
    generator = np.random.default_rng(seed)
    return BatchSamples(generator.normal(size=(16, 3)).astype(np.float32),
                        generator.normal(size=(16, 2)).astype(np.float32))


def test_an_objective_of_a_wrapper_scores_each_candidate_as_es_on_the_bare_network():
    """The wrapper's run is the plain ESOptimizer's on the same network, step for step, so the
    objective saw each candidate's weights through ``model.forward``."""
    seen = []

    class Recording(NegativeSquaredError):
        def __call__(self, model, samples):
            seen.append((type(model), model.net, samples))
            return super().__call__(model, samples)

    wrapped_net, bare_net, samples = three_layer_net(), three_layer_net(), batch()
    wrapped = ESOptimizer(Model(wrapped_net, SamplingStrategy.ALL), Recording(),
                          keras.optimizers.SGD(0.1), sigma=0.1, n_samples=6)
    bare = ESOptimizer(bare_net, negative_squared_error, keras.optimizers.SGD(0.1), sigma=0.1,
                       n_samples=6)
    for _ in range(3):
        wrapped.gradient_step(samples)
        bare.step(samples)
    assert len(seen) == 18
    assert all(kind is Model and net is wrapped_net and given is samples
               for kind, net, given in seen)
    for mine, theirs in zip(wrapped_net.get_weights(), bare_net.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(wrapped_net.get_weights()[0], three_layer_net().get_weights()[0])
    assert wrapped.get_config()["strategy"] == "all"


def test_gradient_step_returns_the_ascent_and_moves_the_weights_along_it():
    """SGD(lr) on ES's direction: w' = w + lr g, and g points up a linear objective c . w."""
    dimension, rate = 10, 0.5
    slope = np.random.default_rng(3).normal(size=dimension).astype(np.float32)
    net = keras.Sequential([keras.Input((dimension,)), keras.layers.Dense(1, use_bias=False)])

    class Linear(Objective):
        def __call__(self, model, samples):
            return float(ops.convert_to_numpy(model(samples.inputs))[0, 0])

    optimizer = ESOptimizer(Model(net, SamplingStrategy.ALL), Linear(),
                            keras.optimizers.SGD(rate), sigma=0.05, n_samples=400)
    before = net.get_weights()[0].ravel()
    ascent = optimizer.gradient_step(Samples(inputs=slope[None]))
    assert list(ascent) == [0]
    np.testing.assert_allclose(net.get_weights()[0].ravel(), before + rate * ascent[0].ravel(),
                               rtol=1e-5, atol=1e-7)
    cosine = ascent[0].ravel() @ slope / np.linalg.norm(ascent[0]) / np.linalg.norm(slope)
    assert cosine > 0.9, cosine


@pytest.mark.parametrize("strategy, expected", [
    (SamplingStrategy.BOTTOM_UP, [[0, 1], [2, 3], [4, 5], [0, 1]]),
    (SamplingStrategy.TOP_DOWN, [[4, 5], [2, 3], [0, 1], [4, 5]]),
    ("top_down", [[4, 5], [2, 3], [0, 1], [4, 5]]),
    (SamplingStrategy.ALL, [[0, 1, 2, 3, 4, 5]] * 4)])
def test_the_sampling_strategy_chooses_the_layers_each_step_moves(strategy, expected):
    optimizer = ESOptimizer(Model(three_layer_net(), strategy), NegativeSquaredError(), "sgd",
                            n_samples=4)
    assert [sorted(optimizer.gradient_step(batch())) for _ in range(4)] == expected


def test_model_defaults_to_random_layers_as_there_and_a_strategy_is_given_once():
    optimizer = ESOptimizer(Model(three_layer_net()), NegativeSquaredError(), "sgd", n_samples=4)
    moved = [tuple(sorted(optimizer.gradient_step(batch()))) for _ in range(20)]
    assert set(moved) == {(0, 1), (2, 3), (4, 5)}
    # The enum also names the strategy of a bare network; the same strategy twice is no conflict.
    bare = ESOptimizer(three_layer_net(), NegativeSquaredError(), strategy=SamplingStrategy.TOP_DOWN)
    assert bare.strategy == "top_down"
    ESOptimizer(Model(three_layer_net(), "bottom_up"), NegativeSquaredError(),
                strategy=SamplingStrategy.BOTTOM_UP)
    with pytest.raises(ValueError, match="strategy is given twice: 'all' and the Model "
                                         "wrapper's 'random'"):
        ESOptimizer(Model(three_layer_net()), NegativeSquaredError(), strategy="all")
    with pytest.raises(ValueError, match="'sideways' is not a valid SamplingStrategy"):
        Model(three_layer_net(), "sideways")
    with pytest.raises(TypeError, match="net must be a keras.Model, got function"):
        Model(three_layer_net)


def test_samples_carry_whatever_fields_the_objective_reads():
    keyword = Samples(inputs=1, targets=2)
    assert (keyword.inputs, keyword.targets) == (1, 2)
    fields = batch()
    assert isinstance(fields, Samples) and fields.inputs.shape == (16, 3)
    with pytest.raises(TypeError):
        BatchSamples(inputs=fields.inputs)  # a dataclass's fields are required


def test_an_objective_must_say_how_it_scores():
    class Unfinished(Objective):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Unfinished()


def test_a_vectorised_objective_gets_stacked_weights_through_a_wrapper_too():
    @vectorized
    def weight_sum(stacked_weights, _samples):
        assert isinstance(stacked_weights, list)
        return sum(np.sum(w, axis=tuple(range(1, w.ndim))) for w in stacked_weights)

    optimizer = ESOptimizer(Model(three_layer_net(), SamplingStrategy.ALL), weight_sum,
                            keras.optimizers.SGD(0.1), n_samples=8)
    before = sum(float(np.sum(w)) for w in optimizer.model.get_weights())
    optimizer.gradient_step()
    assert sum(float(np.sum(w)) for w in optimizer.model.get_weights()) > before

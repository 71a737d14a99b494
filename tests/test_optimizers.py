"""Every learned optimiser: Keras façade == pure update, sparse gradients == dense ones,
serialisation, meta-gradients."""

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from l2o.config import DEFAULTS
from l2o.estimators import TBPTT
from l2o.optimizers import OPTIMIZERS, LearnedOptimizer
from l2o.optimizers.cells import gru
from l2o.problems import MLPClassifier, Quadratic

# The constructors built on an update rule (PIO samples instead).
CONSTRUCTORS = {name: cls for name, cls in OPTIMIZERS.items() if issubclass(cls, LearnedOptimizer)}

# Small networks, and learning rates large enough that a mismatch would show.
NETWORKS = {"DM": {}, "RNNProp": {}, "NormalizedMLP": {"learning_rate": 0.5},
            "ControlledAdam": {"learning_rate": 0.05, "controller_linear": True},
            "ScaleBasic": {"init_lr": [0.01, 0.1]},
            "ScaleHierarchical": {"init_lr": [0.01, 0.1]},
            "ScheduledSGD": {"learning_rate": 1.0, "decay_steps": 2.0, "momentum": 0.5,
                             "learn_momentum": True, "groups": 2}}
SMALL = {"DM": {"layers": [6, 5]}, "RNNProp": {"layers": [6, 5]},
         "ControlledAdam": {"controller_layers": [3], "activation": "tanh"},
         "NormalizedMLP": {"hidden_layers": [6]},
         "ScaleBasic": {"layers": [6], "timescales": 2},
         "ScaleHierarchical": {"param_units": 4, "tensor_units": 3, "global_units": 2,
                               "timescales": 3, "init_lr": [0.01, 0.1]},
         "ScheduledSGD": {"decay_steps": 2.0, "momentum": 0.5, "learn_momentum": True}}


def gradients(problem, params, batch):
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = problem.loss(params, batch)
    return tape.gradient(loss, params)


@pytest.mark.slow
@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_model_fit_matches_functional_update(constructor):
    """Acceptance: the optimiser in model.fit == its pure update for 5 steps (1e-5)."""
    optimizer_class = CONSTRUCTORS[constructor]
    rule = optimizer_class.rule_class(**NETWORKS[constructor])
    problem = MLPClassifier(layers=[16], dataset="digits", batch_size=32, shuffle_buffer=1)
    params = problem.init(seed=4)
    meta_weights = {k: 3.0 * v for k, v in rule.init_meta_weights(seed=7).items()}
    images, labels = problem.batches(seed=0, start=0, count=5)

    model = problem.build_model(params)
    model.compile(optimizer=optimizer_class(meta_weights=meta_weights,
                                            network=NETWORKS[constructor], seed=3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.reshape((-1,) + problem.input_shape), labels.reshape(-1), batch_size=32,
              epochs=1, shuffle=False, verbose=0)

    meta = {k: ops.convert_to_tensor(v) for k, v in meta_weights.items()}
    current = [ops.convert_to_tensor(p) for p in params]
    state = rule.init_state(current, 3)
    for step in range(5):
        updates, state = rule.update(meta, gradients(problem, current,
                                                     (images[step], labels[step])),
                                     current, state)
        current = [p + u for p, u in zip(current, updates)]
    moved = max(float(np.max(np.abs(ops.convert_to_numpy(c) - p)))
                for c, p in zip(current, params))
    assert moved > 1e-3, "the optimiser should move the weights visibly"
    for got, expected in zip(model.get_weights(), current):
        np.testing.assert_allclose(got, ops.convert_to_numpy(expected), atol=1e-5)


class OneHotEmbedding(keras.layers.Embedding):
    """An Embedding whose lookup is a one-hot product: the same outputs, a dense gradient."""

    def call(self, inputs):
        one_hot = ops.one_hot(ops.cast(inputs, "int32"), self.input_dim,
                              dtype=self.embeddings.dtype)
        return ops.matmul(one_hot, self.embeddings)


def embedding_model(layer):
    return keras.Sequential([keras.Input((3,), dtype="int32"), layer(12, 4),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


@pytest.mark.slow
@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_sparse_embedding_gradients_give_the_dense_update(constructor):
    """On TensorFlow an Embedding's gradient is sparse (IndexedSlices): model.fit with it
    takes the step the same model takes given the dense gradient (a one-hot lookup)."""
    tokens = np.array([[1, 2, 3], [3, 4, 4], [0, 7, 7], [9, 1, 1]], "int32")
    labels = np.array([0, 1, 2, 1])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    sparse = embedding_model(keras.layers.Embedding)
    with tf.GradientTape() as tape:
        value = loss(labels, sparse(tokens))
    assert isinstance(tape.gradient(value, sparse.trainable_variables)[0], tf.IndexedSlices)
    initial = [np.random.default_rng(index).normal(size=w.shape).astype("float32")
               for index, w in enumerate(sparse.get_weights())]
    trained = []
    for model in (sparse, embedding_model(OneHotEmbedding)):
        model.set_weights(initial)
        model.compile(optimizer=CONSTRUCTORS[constructor](network=SMALL[constructor],
                                                          seed=3), loss=loss)
        model.fit(tokens, labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
        trained.append(model.get_weights())
    for got, expected in zip(*trained):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(trained[0][0] - initial[0])) > 1e-4  # the table did move


@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_config_round_trip_and_saved_model(constructor, tmp_path):
    optimizer_class = CONSTRUCTORS[constructor]
    optimizer = optimizer_class(network=SMALL[constructor], seed=2, learning_rate=0.5)
    restored = optimizer_class.from_config(optimizer.get_config())
    assert restored.network == SMALL[constructor]
    assert float(restored.learning_rate) == 0.5
    for key, value in optimizer.meta_weights.items():
        np.testing.assert_array_equal(restored.meta_weights[key], value)
    assert isinstance(keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)),
                      optimizer_class)

    problem = MLPClassifier(layers=[4], dataset="digits", batch_size=16)
    model = problem.build_model(problem.init(0))
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = problem.batches(0, 0, 1)
    model.fit(images[0], labels[0], verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, optimizer_class)
    for key, value in optimizer.meta_weights.items():
        np.testing.assert_array_equal(loaded.optimizer.meta_weights[key], value)


@pytest.mark.slow
@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_tbptt_gradient_matches_finite_differences(constructor):
    """Acceptance: 3-step unroll on the quadratic, float64, relative error < 1e-3."""
    rule, problem = CONSTRUCTORS[constructor].rule_class(**SMALL[constructor]), Quadratic(dim=10)
    # Zero-initialised arrays (biases, NormalizedMLP's output layer, which would leave every
    # layer below it without gradient) made random, so that every meta-weight matters.
    noise = np.random.default_rng(2)
    initial = {k: v if np.any(v) else 0.1 * noise.standard_normal(v.shape)
               for k, v in rule.init_meta_weights(seed=1).items()}
    variables = {k: keras.Variable(v.astype(np.float64), dtype="float64", name=k.replace("/", "_"))
                 for k, v in initial.items()}
    estimator = TBPTT(rule, problem, variables, DEFAULTS["loss_args"], "mean")
    params = [ops.convert_to_tensor(p.astype(np.float64)) for p in problem.init(5)]
    batches = tuple(b.astype(np.float64) for b in problem.batches(5, 0, 3))
    initial = estimator.initial_loss(params, tuple(b[0] for b in batches))

    value, grads, *_ = estimator.estimate(params, rule.init_state(params, 0), batches, initial)
    names = list(variables)
    analytic = {n: ops.convert_to_numpy(g) for n, g in zip(names, grads)}
    base = {n: ops.convert_to_numpy(v) for n, v in variables.items()}

    # The meta-loss by hand: an eager loop of the rule's update, scored with the default
    # loss_args and unroll weights "mean": mean_t log((f_t + eps) / (f_0 + eps)), f_t taken
    # before step t's update and f_0 the loss of the initial parameters on the first batch.
    assert DEFAULTS["loss_args"]["scale_objective"] and DEFAULTS["loss_args"][
        "use_log_objective"] and DEFAULTS["loss_args"]["use_numerator_epsilon"]
    meta = {n: ops.convert_to_tensor(v) for n, v in base.items()}
    current, state, losses = list(params), rule.init_state(params, 0), []
    for step in range(3):
        batch = tuple(b[step] for b in batches)
        losses.append(float(problem.loss(current, batch)))
        updates, state = rule.update(meta, gradients(problem, current, batch), current, state)
        current = [p + u for p, u in zip(current, updates)]
    epsilon = DEFAULTS["loss_args"]["epsilon"]
    by_hand = np.mean(np.log((np.array(losses) + epsilon) / (losses[0] + epsilon)))
    assert float(value) == pytest.approx(by_hand, rel=1e-10, abs=1e-12)

    def loss_at(point):
        for n in names:
            variables[n].assign(point[n])
        return float(estimator.evaluate(params, rule.init_state(params, 0), batches,
                                        initial)[0])

    generator, h = np.random.default_rng(0), 1e-6
    directions = [{n: generator.standard_normal(v.shape) for n, v in base.items()}]
    for name in (names[0], names[-1]):  # plus each one's most sensitive coordinate
        directions.append({n: np.zeros_like(v) for n, v in base.items()})
        directions[-1][name].flat[np.argmax(np.abs(analytic[name]))] = 1.0
    for direction in directions:
        finite = (loss_at({n: base[n] + h * direction[n] for n in names})
                  - loss_at({n: base[n] - h * direction[n] for n in names})) / (2 * h)
        exact = sum(float(np.sum(analytic[n] * direction[n])) for n in names)
        assert abs(exact) > 1e-8
        assert abs(exact - finite) / abs(finite) < 1e-3, (exact, finite)


def test_gru_cell_matches_keras():
    from l2o.optimizers.cells import init_gru

    weights = init_gru("g", 3, 4, seed=1, bias_initializer="random_normal")
    cell = keras.layers.GRUCell(4)
    cell.build((None, 3))
    cell.set_weights([weights["g/kernel"], weights["g/recurrent_kernel"], weights["g/bias"]])
    generator = np.random.default_rng(0)
    x, h = generator.standard_normal((5, 3)).astype(np.float32), \
        generator.standard_normal((5, 4)).astype(np.float32)
    expected, _ = cell(x, h)
    got = gru({k: ops.convert_to_tensor(v) for k, v in weights.items()}, "g", x, h)
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-6)


def test_rnnprop_first_step_by_hand():
    """At t = 1, m_hat = g and v_hat = g^2: both inputs are sign(g) (up to epsilon)."""
    rule = CONSTRUCTORS["RNNProp"].rule_class(layers=[3])
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    grads = [ops.convert_to_tensor(np.array([2.0, -0.001], np.float32))]
    same_signs = [ops.convert_to_tensor(np.array([1.0, -1.0], np.float32))]
    params = [ops.zeros((2,))]
    first, _ = rule.update(meta, grads, params, rule.init_state(params, 0))
    second, _ = rule.update(meta, same_signs, params, rule.init_state(params, 0))
    np.testing.assert_allclose(ops.convert_to_numpy(first[0]), ops.convert_to_numpy(second[0]),
                               rtol=1e-5)
    assert np.all(np.abs(ops.convert_to_numpy(first[0])) < 0.1)  # alpha bounds the step


@pytest.mark.slow
def test_a_model_saved_by_an_earlier_version_loads():
    """``tests/fixtures/pretrained_model_ddefae2.keras``: a 4-3 Dense model compiled with the
    pretrained optimiser and fitted one step, saved when NormalizedMLP lived in
    ``l2o.optimizers.mlp`` (the module name its file records). A fresh process that imports
    ``l2o.optimizers`` (which registers the optimisers with Keras) loads it, with the
    optimiser's step count and slots, and its next step is the one the same optimiser takes
    from the same state built here."""
    script = textwrap.dedent("""
        import sys, keras, numpy as np, l2o.optimizers
        model = keras.models.load_model(sys.argv[1])
        optimizer = model.optimizer
        print(type(optimizer).__name__, int(optimizer.iterations.numpy()))
        x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
        model.fit(x, np.zeros((8, 3), "float32"), batch_size=8, verbose=0)
        np.save(sys.argv[2], model.get_weights()[0])
    """)
    fixture = Path(__file__).parent / "fixtures" / "pretrained_model_ddefae2.keras"
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "kernel.npy"
        result = subprocess.run([sys.executable, "-c", script, str(fixture), str(out)],
                                check=False, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split()[-2:] == ["NormalizedMLPOptimizer", "1"]
        reloaded_kernel = np.load(out)
    model = keras.models.load_model(fixture)
    before = model.get_weights()[0]
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
    model.fit(x, np.zeros((8, 3), "float32"), batch_size=8, verbose=0)
    np.testing.assert_allclose(reloaded_kernel, model.get_weights()[0], rtol=1e-6)
    assert not np.allclose(before, reloaded_kernel)

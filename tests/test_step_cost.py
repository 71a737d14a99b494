"""benchmarks/systems/step_cost.py: state bytes and FLOPs counted right; the recommended
pretrained optimiser trains a 10M-parameter Embedding model in model.fit on both backends."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT

from benchmarks.systems import step_cost
from l2o.optimizers import NormalizedMLPOptimizer


def built(optimizer):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    optimizer.build(model.trainable_variables)
    return optimizer


def test_state_bytes_count_per_parameter_slots_and_meta_weights_apart():
    # 3*4 + 4 + 4*2 + 2 = 26 parameters; Adam keeps m and v in float32: 2 * 4 * 26 bytes.
    assert step_cost.state_bytes(built(keras.optimizers.Adam())) == (208, 0)
    assert step_cost.state_bytes(built(keras.optimizers.SGD())) == (0, 0)
    optimizer = built(NormalizedMLPOptimizer(network={"hidden_layers": [8],
                                                      "momentum_decays": [0.5, 0.9]}))
    meta = sum(value.size * 4 for value in optimizer.meta_weights.values())
    slots, meta_bytes = step_cost.state_bytes(optimizer)
    assert meta_bytes == meta
    # Two first moments and v per coordinate (12 bytes each of 26) plus Adafactor's row and
    # column statistics (a kernel R x C keeps R + C, a bias 1 + C): (3 + 4) + (1 + 4) +
    # (4 + 2) + (1 + 2) floats.
    assert slots == 12 * 26 + 4 * (7 + 5 + 6 + 3)


@pytest.mark.parametrize("entry", ["lite", "=runs/x", "adam=runs/x"])
def test_runs_must_name_a_new_optimiser_and_a_directory(entry):
    with pytest.raises(SystemExit) as error:
        step_cost.main(["--runs", entry])
    assert error.value.code == 2


def test_flops_per_coordinate_are_twice_the_networks_multiply_adds():
    optimizer = NormalizedMLPOptimizer(network={"hidden_layers": [8, 4]})
    features = optimizer.rule.feature_count
    assert step_cost.per_coordinate_flops(optimizer) == 2 * (features * 8 + 8 * 4 + 4 * 2)
    assert step_cost.per_coordinate_flops(keras.optimizers.Adam()) is None


EMBEDDING_FIT = """
import json, keras, numpy as np, l2o
from benchmarks.systems import step_cost
build, data = step_cost.MODELS["embedding_10m"]
keras.utils.set_random_seed(0)
model = build()
model.compile(optimizer=l2o.load_optimizer("pretrained"),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
tokens, labels = data(np.random.default_rng(0), 64)
table = model.layers[0].embeddings
before = np.array(table[:1000])
history = model.fit(tokens, labels, batch_size=32, epochs=1, verbose=0)
after = np.array(table[:1000])
seen = sorted(set(tokens.ravel().tolist()) & set(range(1000)))
print(json.dumps({"parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
                  "losses": history.history["loss"],
                  "seen_moved": bool(np.all(np.any(after[seen] != before[seen], axis=1)))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_pretrained_optimiser_trains_a_10m_parameter_embedding_model(backend):
    """Two steps of model.fit (a sparse embedding gradient on TensorFlow, a dense one on JAX):
    the loss stays finite and every embedding row that a batch used moves."""
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", EMBEDDING_FIT], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["parameters"] >= 10_000_000
    assert np.all(np.isfinite(report["losses"]))
    assert report["seen_moved"]

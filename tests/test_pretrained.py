"""The shipped optimiser: loads by name and beats Adam at its default rate on a small task."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import l2o
from l2o import evaluation
from l2o.problems import MLPClassifier


def test_names_and_a_clear_error_for_an_unknown_one():
    assert "normalized_mlp_digits" in l2o.pretrained.names()
    try:
        l2o.load_optimizer("pretrained:nope")
    except ValueError as error:
        assert "pretrained:nope: no such pretrained optimiser" in str(error)
    else:
        raise AssertionError("an unknown name must be refused")


@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_pretrained_beats_adam_at_its_default_rate_on_a_small_task(name):
    """A digits MLP of a width and batch size not in its training set, 300 steps, 2 seeds."""
    problem = MLPClassifier(layers=[48], activation="relu", dataset="digits", batch_size=32)
    final = {}
    for label, make in (("pretrained", lambda seed: l2o.load_optimizer(f"pretrained:{name}")),
                        ("adam", lambda seed: keras.optimizers.Adam(1e-3))):
        result = evaluation.curves(problem, make, steps=300, repeats=2, seed=0,
                                   validation_every=300)
        final[label] = float(np.mean(result["train_loss"][:, -20:]))
    assert np.isfinite(final["pretrained"])
    assert final["pretrained"] < 0.5 * final["adam"], final


FIT_SCRIPT = """
import sys
import keras
import numpy as np
import l2o
from sklearn.datasets import load_digits

images, labels = load_digits(return_X_y=True)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10)])
model.compile(optimizer=l2o.load_optimizer(sys.argv[1]),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit((images[:1000] / 16.0).astype("float32"), labels[:1000], batch_size=25,
                    epochs=25, verbose=0)
print(keras.backend.backend(), *history.history["loss"])
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.parametrize("name", l2o.pretrained.names())
def test_pretrained_trains_a_keras_model_for_1000_steps_on_each_backend(backend, name):
    """model.fit, 1000 steps (40 batches x 25 epochs), in a fresh interpreter per backend."""
    if backend == "jax":
        pytest.importorskip("jax")
    result = subprocess.run([sys.executable, "-c", FIT_SCRIPT, f"pretrained:{name}"],
                            check=False, env={**os.environ, "KERAS_BACKEND": backend},
                            capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    used, *losses = result.stdout.split()
    losses = np.array(losses, dtype=float)
    assert used == backend
    assert len(losses) == 25 and np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.1 * losses[0], losses

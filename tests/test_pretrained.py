"""The shipped optimiser: loads by name and beats Adam at its default rate on a small task."""

import keras
import numpy as np

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


def test_pretrained_beats_adam_at_its_default_rate_on_a_small_task():
    """A digits MLP of a width and batch size not in its training set, 300 steps, 2 seeds."""
    problem = MLPClassifier(layers=[48], activation="relu", dataset="digits", batch_size=32)
    final = {}
    for label, make in (("pretrained", lambda seed: l2o.load_optimizer(
            "pretrained:normalized_mlp_digits")),
                        ("adam", lambda seed: keras.optimizers.Adam(1e-3))):
        result = evaluation.curves(problem, make, steps=300, repeats=2, seed=0,
                                   validation_every=300)
        final[label] = float(np.mean(result["train_loss"][:, -20:]))
    assert np.isfinite(final["pretrained"])
    assert final["pretrained"] < 0.5 * final["adam"], final

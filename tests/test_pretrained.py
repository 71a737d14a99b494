"""The shipped optimiser: loads by name and beats Adam at its default rate on a small task;
``python -m l2o.pretrained export`` ships a run's weights under a plain, new name only."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import l2o
from l2o import checkpoints, evaluation, pretrained
from l2o.optimizers import DMRule
from l2o.pretrained.__main__ import main as pretrained_command
from l2o.problems import MLPClassifier


def test_names_and_a_clear_error_for_an_unknown_one():
    assert "normalized_mlp_digits" in l2o.pretrained.names()
    try:
        l2o.load_optimizer("pretrained:nope")
    except ValueError as error:
        assert "pretrained:nope: no such pretrained optimiser" in str(error)
    else:
        raise AssertionError("an unknown name must be refused")


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_recommended_optimiser_beats_adam_on_validation_loss_of_a_small_task():
    """``load_optimizer("pretrained")`` against Adam(1e-3) on data neither trained on: a digits
    MLP of a width and batch size not in its training set, validation loss after 300 steps,
    2 seeds."""
    assert l2o.load_optimizer("pretrained").get_config()["meta_weights"] == \
        l2o.load_optimizer(f"pretrained:{l2o.pretrained.RECOMMENDED}").get_config()["meta_weights"]
    problem = MLPClassifier(layers=[48], activation="relu", dataset="digits", batch_size=32)
    final = {}
    for label, make in (("pretrained", lambda seed: l2o.load_optimizer("pretrained")),
                        ("adam", lambda seed: keras.optimizers.Adam(1e-3))):
        result = evaluation.curves(problem, make, steps=300, repeats=2, seed=0,
                                   validation_steps=[300])
        final[label] = float(np.mean(result["validation_loss"][:, -1]))
    assert np.isfinite(final["pretrained"])
    assert final["pretrained"] < 0.8 * final["adam"], final


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


@pytest.mark.slow
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


def fake_run(directory):
    """A DM run directory with a best checkpoint (its initial meta-weights), untrained."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"constructor": "DM",
                                                       "network": {"layers": [3]}}))
    weights = DMRule(layers=[3]).init_meta_weights(0)
    checkpoints.save(str(directory / "checkpoints" / "best.npz"),
                     {f"meta/{key}": value for key, value in weights.items()}, {"period": 4})
    return str(directory)


def export_error(capsys, *arguments):
    """The one line ``export`` gives for ``arguments``, and that it exited with status 2."""
    with pytest.raises(SystemExit) as exit_status:
        pretrained_command(["export", *arguments])
    assert exit_status.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    return captured.err.rstrip("\n")


def test_export_ships_a_new_plain_name_and_replaces_one_only_when_told(tmp_path, monkeypatch,
                                                                         capsys):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(pretrained, "FOLDER", str(shipped))
    run = fake_run(tmp_path / "run")
    pretrained_command(["export", run, "small_dm"])
    assert capsys.readouterr().out == f"wrote pretrained:small_dm from {run} (period 4)\n"
    assert sorted(os.listdir(shipped)) == ["small_dm.json", "small_dm.npz"]
    assert l2o.load_optimizer("pretrained:small_dm").network == {"layers": [3]}

    assert export_error(capsys, run, "small_dm") == (
        "error: pretrained:small_dm is already shipped: choose another NAME, or pass "
        "--overwrite to replace it")
    pretrained_command(["export", run, "small_dm", "--overwrite", "--description", "again"])
    assert capsys.readouterr().out.startswith("wrote pretrained:small_dm")
    assert pretrained.describe("small_dm")["description"] == "again"
    for name in ("../../escaped", "a/b", "..", "x.y", "", "9lives"):
        assert export_error(capsys, run, name) == (
            f"error: NAME {name!r}: a pretrained optimiser's name is a plain identifier "
            f"(letters, digits and _, such as my_mlp), not a path")
    assert sorted(os.listdir(shipped)) == ["small_dm.json", "small_dm.npz"]
    assert not (tmp_path / "escaped.json").exists()


def test_export_of_a_missing_run_or_checkpoint_is_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nonexistent")
    assert export_error(capsys, missing, "fresh_name") == (
        f"error: {missing}: not a run directory (no config.json); start one with train.py")
    # The shipped names are refused before the run is read; with --overwrite, the run is.
    assert export_error(capsys, missing, "normalized_mlp_family").startswith(
        "error: pretrained:normalized_mlp_family is already shipped")
    run = fake_run(tmp_path / "run")
    assert "no checkpoint 'period_0009'" in export_error(
        capsys, run, "fresh_name", "--checkpoint", "period_0009")
    assert not os.path.exists(os.path.join(pretrained.FOLDER, "fresh_name.json"))

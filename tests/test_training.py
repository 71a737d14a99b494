"""Meta-training end to end: resume equivalence, outputs, and learning beats a baseline."""

import json
import os

import numpy as np
import pytest
from conftest import tiny_config

import l2o
from l2o import checkpoints, cli
from l2o.config import resolve
from l2o.optimizers import OPTIMIZERS
from l2o.strategies import STRATEGIES
from l2o.trainer import MetaTrainer


def train_in_process(config, overrides=()):
    resolved = resolve(config, overrides)
    trainer = MetaTrainer(resolved)
    STRATEGIES[resolved["strategy_constructor"]](**resolved["strategy"]).run(
        trainer, resolved["directory"])
    return trainer


PARTICLES = {"n_particles": 4, "sigma": 0.01, "persistent": True, "horizon": 15}


@pytest.mark.parametrize("training", [
    {"persistent": False}, {"persistent": True},
    {"estimator": "es", **PARTICLES},
    {"estimator": "pes", "stagger": "breakstep", **PARTICLES},
], ids=["tbptt", "tbptt-persistent", "es", "pes-breakstep"])
def test_resume_gives_the_same_meta_weights(tmp_path, training):
    """Acceptance: 2 periods == 1 period, then resumed for 1 more (populations included)."""
    settings = {"training": {"depth": 2, **training}}
    straight = train_in_process(tiny_config(tmp_path / "straight", **settings))
    broken_config = tiny_config(tmp_path / "broken", **settings)
    train_in_process(broken_config, ["strategy/num_periods=1"])
    cli.resume([str(tmp_path / "broken"), "strategy/num_periods=2"])
    resumed, _ = checkpoints.load(str(tmp_path / "broken" / "checkpoints" / "last.npz"))
    moved = 0.0
    for name, value in straight.meta_weights().items():
        np.testing.assert_allclose(resumed[f"meta/{name}"], value, rtol=1e-5, atol=1e-7)
        initial = OPTIMIZERS["DM"].rule_class(**straight.config["network"]).init_meta_weights(0)
        moved = max(moved, float(np.max(np.abs(value - initial[name]))))
    assert moved > 1e-4, "meta-training should have changed the weights"
    lines = (tmp_path / "broken" / "summary.jsonl").read_text().splitlines()
    assert [json.loads(line)["period"] for line in lines] == [0, 1]


def test_run_directory_contents_and_evaluation(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(tiny_config(tmp_path / "run")))
    cli.train([str(config_path), "strategy/num_periods=1"])
    run = tmp_path / "run"
    for name in ("config.json", "summary.jsonl", "checkpoints/best.npz",
                 "checkpoints/last.npz", "checkpoints/period_0000.npz"):
        assert (run / name).exists(), name
    assert os.listdir(run / "tensorboard")
    with pytest.raises(SystemExit):  # the directory holds a run now
        cli.train([str(config_path)])
    cli.evaluate([str(run)])
    cli.baseline([str(run), "evaluation/baseline/learning_rates=[0.01, 0.1]"])
    evaluation = run / "evaluation"
    for label in ("learned_best", "Adam_lr0.001", "Adam_lr0.01", "Adam_lr0.1"):
        summary = json.loads((evaluation / f"{label}.json").read_text())
        assert np.isfinite(summary["problems"][0]["final_train_loss_mean"])
        curves = np.load(evaluation / f"{label}.npz")
        assert curves["problem0/train_loss"].shape == (2, 12)
        assert curves["problem0/validation_accuracy"].shape == (2, 4)
    assert (evaluation / "problem0.png").stat().st_size > 10000
    optimizer = l2o.load_optimizer(str(run), "last")
    assert optimizer.network["layers"] == [20, 20]


def test_meta_trained_dm_beats_adam_on_digits(tmp_path):
    """A learned optimiser against a baseline: meta-training must buy something real."""
    directory = tmp_path / "run"
    config = tiny_config(directory)
    config["problems"][0]["kwargs"] = {"layers": [20], "dataset": "digits", "batch_size": 128}
    train_in_process(config, ["strategy/num_periods=3", "strategy/epochs_per_period=6",
                              "training/depth=5", "strategy/unroll_distribution=20",
                              "strategy/validation_unroll=100"])
    cli.evaluate([str(directory), "evaluation/steps=100", "evaluation/repeats=3"])
    learned = json.loads((directory / "evaluation" / "learned_best.json").read_text())
    adam = json.loads((directory / "evaluation" / "Adam_lr0.001.json").read_text())
    learned_loss = learned["problems"][0]["final_train_loss_mean"]
    adam_loss = adam["problems"][0]["final_train_loss_mean"]
    assert learned_loss < 0.5 * adam_loss, (learned_loss, adam_loss)


@pytest.mark.parametrize("constructor, network, strategy", [
    ("DM", {"layers": [6]}, "Simple"),
    ("RNNProp", {"layers": [6]}, "Curriculum"),
    ("ScaleBasic", {"layers": [6]}, "Simple"),
    ("ScaleHierarchical", {"param_units": 4, "tensor_units": 3, "global_units": 2}, "Simple"),
    ("ScheduledSGD", {"groups": 2, "learn_momentum": True, "momentum": 0.5}, "Curriculum"),
])
def test_pes_meta_trains_every_optimiser_under_every_strategy(tmp_path, constructor, network,
                                                              strategy):
    strategy_settings = {"epochs_per_period": 1, "validation_unroll": 5,
                         "validation_repeat": 1}
    if strategy == "Simple":
        strategy_settings.update(num_periods=1, unroll_distribution=5)
    else:
        strategy_settings.update(schedule=[5, 10], min_periods=1, max_periods=1)
    config = tiny_config(tmp_path, constructor=constructor, network=network,
                         strategy_constructor=strategy,
                         training={"depth": 2, "estimator": "pes", "n_particles": 4,
                                   "sigma": 0.1})
    config["strategy"] = strategy_settings
    trainer = train_in_process(config)
    initial = OPTIMIZERS[constructor].rule_class(**trainer.config["network"]).init_meta_weights(0)
    moved = max(float(np.max(np.abs(value - initial[name])))
                for name, value in trainer.meta_weights().items())
    assert np.isfinite(moved) and moved > 1e-5
    assert (tmp_path / "checkpoints" / "best.npz").exists()

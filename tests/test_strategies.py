"""Curriculum rules and resume, imitation learning, and random parameter scaling."""

import json

import numpy as np
import pytest
from conftest import tiny_config

from l2o.config import ConfigError, resolve
from l2o.strategies import STRATEGIES
from l2o.strategies.curriculum import stage_after
from l2o.trainer import MetaTrainer

OPTIONS = {"min_periods": 2, "max_periods": 4}


def test_stage_advances_on_a_validation_plateau():
    progress = {"stage": 0, "periods": 0, "stage_best": np.inf, "best_before": np.inf,
                "finished": False}
    history = []
    for validation in (5.0, 4.0, 4.5, 3.0):  # the third period does not improve
        progress = stage_after(progress, validation, OPTIONS)
        history.append((progress["periods"], progress["finished"], progress["stage_best"]))
    assert history[:3] == [(1, False, 5.0), (2, False, 4.0), (3, True, 4.0)]


def test_stage_runs_min_periods_and_stops_at_max_periods():
    progress = {"stage": 0, "periods": 0, "stage_best": 1.0, "best_before": 1.0,
                "finished": False}
    progress = stage_after(progress, 2.0, OPTIONS)  # worse, but only 1 < min_periods
    assert not progress["finished"]
    for validation in (0.9, 0.8, 0.7):  # always improving: stopped by max_periods
        progress = stage_after(progress, validation, OPTIONS)
    assert progress["finished"] and progress["periods"] == 4


def curriculum_config(directory):
    config = tiny_config(directory, strategy_constructor="Curriculum")
    config["strategy"] = {"schedule": [3, 5], "min_periods": 1, "max_periods": 2,
                          "max_stages": 2, "epochs_per_period": 1, "validation_unroll": 10,
                          "validation_repeat": 1}
    return config


def run(config, stop_after_period=None):
    """Trains in-process; ``stop_after_period`` simulates a kill after that checkpoint."""
    resolved = resolve(config)
    trainer = MetaTrainer(resolved)
    strategy = STRATEGIES[resolved["strategy_constructor"]](**resolved["strategy"])
    if stop_after_period is not None:
        finish = strategy.finish_period

        def finish_then_die(period, metrics):
            finish(period, metrics)
            if period == stop_after_period:
                raise KeyboardInterrupt

        strategy.finish_period = finish_then_die
    try:
        strategy.run(trainer, resolved["directory"])
    except KeyboardInterrupt:
        pass
    return trainer


def summaries(directory):
    return [json.loads(line) for line in (directory / "summary.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_curriculum_follows_the_schedule_and_resumes_mid_stage(tmp_path):
    straight = run(curriculum_config(tmp_path / "straight"))
    lines = summaries(tmp_path / "straight")
    assert [line["unroll"] for line in lines] == [{0: 3, 1: 5}[line["stage"]] for line in lines]
    assert [line["stage"] for line in lines] == sorted(line["stage"] for line in lines)
    assert {line["stage"] for line in lines} == {0, 1}

    broken = curriculum_config(tmp_path / "broken")
    run(broken, stop_after_period=0)  # killed in the middle of stage 0
    assert len(summaries(tmp_path / "broken")) == 1
    resumed = run(broken)
    assert [(line["stage"], line["unroll"]) for line in summaries(tmp_path / "broken")] == [
        (line["stage"], line["unroll"]) for line in lines]
    for name, value in straight.meta_weights().items():
        np.testing.assert_allclose(resumed.meta_weights()[name], value, rtol=1e-5, atol=1e-7)


def test_curriculum_schedule_is_validated():
    with pytest.raises(ConfigError, match="strategy/schedule: a list of unroll lengths"):
        resolve({"strategy_constructor": "Curriculum", "strategy": {"schedule": [1, 5]}})
    with pytest.raises(ConfigError, match="strategy/min_periods: must be between 1"):
        resolve({"strategy_constructor": "Curriculum",
                 "strategy": {"min_periods": 5, "max_periods": 2}})


@pytest.mark.slow
def test_imitation_loss_falls_tenfold(tmp_path):
    """Acceptance (small): imitating Adam, the imitation loss falls at least 10x."""
    config = tiny_config(tmp_path / "run", constructor="RNNProp",
                         optimizer={"class_name": "Adam",
                                    "config": {"learning_rate": 0.003, "global_clipnorm": 1.0}},
                         training={"depth": 3, "p_teacher": 1.0, "teachers": [
                             {"class_name": "Adam", "config": {"learning_rate": 0.001}}]},
                         strategy={"num_periods": 4, "epochs_per_period": 4,
                                   "unroll_distribution": 10, "annealing_schedule": 0.0})
    run(config)
    losses = [line["train_imitation_loss"] for line in summaries(tmp_path / "run")]
    assert "train_meta_loss" not in summaries(tmp_path / "run")[0]
    assert losses[-1] < losses[0] / 10, losses


def test_imitation_needs_a_teacher():
    with pytest.raises(ConfigError, match="training/p_teacher: is positive but"):
        resolve({}, ["training/p_teacher=0.5"])
    with pytest.raises(ConfigError, match="training/teachers/0: not a usable Keras"):
        resolve({}, ["training/teachers=[{class_name: Adamm}]", "training/p_teacher=1"])


def test_parameter_scaling_keeps_the_problem_but_changes_coordinates(tmp_path):
    trainer = MetaTrainer(resolve(tiny_config(tmp_path), ["training/parameter_scale_spread=2"]))
    plain = trainer.estimators[0].new_trajectory(5)
    scaled = trainer.estimators[0].new_trajectory(5, scaled=True)
    assert plain.scales is None
    for s, p, q in zip(scaled.scales, scaled.params, plain.params):
        np.testing.assert_allclose(np.asarray(s) * np.asarray(p), np.asarray(q), rtol=1e-6)
    ratios = np.concatenate([np.asarray(s).ravel() for s in scaled.scales])
    assert ratios.min() < 0.5 and ratios.max() > 2 and ratios.max() <= np.exp(2)
    assert float(plain.initial_loss) == pytest.approx(float(scaled.initial_loss))


@pytest.mark.parametrize("schedule, factors", [
    (0.0, [1.0, 1.0, 1.0]), (np.log(2.0), [1.0, 0.5, 0.25]), ([0.5, 0.2], [0.5, 0.2, 0.2]),
    ("inverse", [1.0, 0.5, 1 / 3]), ("halving", [1.0, 0.5, 0.25])])
def test_annealing_schedules(schedule, factors):
    config = resolve({}, [f"strategy/annealing_schedule={schedule}"])
    strategy = STRATEGIES["Simple"](**config["strategy"])
    assert [strategy.imitation_factor(i) for i in range(3)] == pytest.approx(factors)


def test_unknown_annealing_schedule():
    with pytest.raises(ConfigError, match="strategy/annealing_schedule: unknown value 'cosine'"):
        resolve({}, ["strategy/annealing_schedule=cosine"])


def test_a_non_finite_validation_never_becomes_the_best(tmp_path):
    """-inf (a loss of exactly 0 under the log objective) must not win best.npz for good."""
    from l2o import checkpoints
    from l2o.strategies import SimpleStrategy

    class Trainer:
        config = resolve(tiny_config(tmp_path))

        def meta_weights(self):
            return {"w": np.zeros(2, np.float32)}

        def state_arrays(self):
            return {}, {}

        def load_state_arrays(self, arrays, info):
            raise AssertionError("a fresh directory has nothing to resume")

    strategy = SimpleStrategy()
    strategy.start(Trainer(), str(tmp_path))
    for period, validation in enumerate([-1.0, float("-inf"), float("nan"), -2.0]):
        strategy.finish_period(period, {"validation_meta_loss": validation})
        _, info = checkpoints.load(str(tmp_path / "checkpoints" / "best.npz"))
        assert info["period"] == (0 if period < 3 else 3)
    assert strategy.state["best_validation"] == -2.0

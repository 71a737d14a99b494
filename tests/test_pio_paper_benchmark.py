"""benchmarks/pio_paper/table1.py: the plateau rule halves exactly when ReduceLROnPlateau would, and
--quick's blocks pick the sweep's argmin and anneal the learning rate by that rule."""

import json

import numpy as np
import pytest
from conftest import load_script


def load_benchmark():
    return load_script("benchmarks/pio_paper", "table1")


def test_plateau_halves_after_more_than_patience_steps_without_relative_improvement():
    plateau = load_benchmark().PlateauHalving(patience=8, threshold=1e-4)
    # 1.0 and 0.5 improve; 0.49999 is within the relative threshold of 0.5, so it does not;
    # the 9th step without improvement (index 10) halves, and the count restarts.
    losses = [1.0, 0.5] + [0.49999] * 9 + [0.5] * 9 + [0.1]
    halved = [index for index, loss in enumerate(losses) if plateau.update(loss)]
    assert halved == [10, 19]
    assert plateau.best == 0.1


@pytest.mark.slow
def test_quick_blocks_choose_the_sweep_argmin_and_anneal_by_the_rule(tmp_path):
    benchmark = load_benchmark()
    out = tmp_path / "out"
    assert benchmark.main(["--quick", "--problems", "carrillo", "--optimizers", "sgd,adam",
                           "--out", str(out), "--figure", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").is_file()
    halvings = 0
    for optimizer in ("sgd", "adam"):
        for block in ("plain", "lrscheduled"):
            with open(out / "quick" / "carrillo" / f"{optimizer}_{block}_final.json") as handle:
                result = json.load(handle)
            scores = result["sweep_scores"]
            assert len(scores) == len(result["points"]) == 3
            assert result["best_index"] == int(np.argmin(scores))
            curves = np.array(result["test_loss"])
            # the default metric, the repository's: the test loss after the last step
            assert np.allclose(result["per_seed"], curves[:, -1])
            assert np.allclose(result["min_per_seed"], curves.min(axis=1))
            assert np.isclose(result["mean"], np.mean(curves[:, -1]))
            rates = np.array(result["learning_rate"])
            start = result["points"][result["best_index"]]["learning_rate"]
            for train, rate in zip(result["train_loss"], rates):
                expected, plateau = [start], benchmark.PlateauHalving()
                for loss in train[:-1]:
                    expected.append(expected[-1] * (0.5 if block == "lrscheduled"
                                                    and plateau.update(loss) else 1.0))
                assert np.allclose(rate, expected, rtol=1e-6)
                halvings += int(np.sum(np.diff(rate) < 0))
    assert halvings > 0  # the lrscheduled runs did hit a plateau, so the check above bit


def test_alldims_points_are_valid_pio_and_adam_settings_and_b2_shares_carrillos_draws():
    benchmark = load_benchmark()
    from l2o.optimizers.pio import PIORule
    from l2o.validation import check_network

    for optimizer in ("pio", "pio-grad", "adam"):
        assert (benchmark.draw_points("carrillo-b2", optimizer, "plain", 8)
                == benchmark.draw_points("carrillo", optimizer, "plain", 8))
    # a new block draws from its own stream: the lrscheduled block's settings stay as they were
    base = benchmark.draw_points("moons", "pio", "lrscheduled", 16)
    extended = benchmark.draw_points("moons", "pio", "lrscheduled-alldims", 16)
    assert [p["learning_rate"] for p in base] != [p["learning_rate"] for p in extended]
    for point in extended:
        assert {"t_end", "layers", "drift_steps", "sigma_factor"} <= set(point)
        assert 1.0 - 1e-9 <= point["t_end"] <= 10.0 + 1e-9
        assert point["layers"] in (1, 2) and point["drift_steps"] in (1, 4, 16)
        network = benchmark.pio_settings("moons", "pio", point)["network"]
        assert network["t_end"] == point["t_end"] and network["drift_steps"] == point["drift_steps"]
        PIORule.validate_config(check_network(PIORule, network))  # t_end in whole dt steps
    assert len({p["drift_steps"] for p in extended}) > 1
    for point in benchmark.draw_points("moons", "adam", "lrscheduled-alldims", 16):
        assert 0.81 <= point["beta_1"] <= 0.98 and 0.91 <= point["beta_2"] <= 0.9998
    assert "beta_1" not in benchmark.draw_points("moons", "sgd", "lrscheduled-alldims", 1)[0]

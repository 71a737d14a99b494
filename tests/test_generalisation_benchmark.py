"""benchmarks/generalisation.py --quick: its table against numbers recomputed from the saved curves."""

import json
import os

import numpy as np
from conftest import load_script

ADAM_RATES = ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1")


def load_benchmark():
    return load_script("benchmarks", "generalisation")


def table_rows(markdown, task):
    """``{optimiser: [cells]}`` of the table in ``task``'s section."""
    section = markdown.split(f"## {task}:")[1].split("\n## ")[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| optimiser", "| ---"))]
    return {cells[0]: cells[1:] for cells in rows}


def test_quick_table_ratios_against_tuned_and_default_adam(tmp_path):
    benchmark = load_benchmark()
    figure = tmp_path / "figure.png"
    arguments = ["--quick", "--repeats", "2", "--pretrained", "normalized_mlp_digits", "--out",
                 str(tmp_path), "--figure", str(figure)]
    assert benchmark.main([*arguments, "--tasks", "moons_mlp"]) == 0
    saved = tmp_path / "generalisation" / "moons_mlp.npz"
    first_write = os.stat(saved).st_mtime_ns
    # A second invocation adds a task and finds the first one saved with the same settings.
    assert benchmark.main([*arguments, "--tasks", "moons_mlp", "teacher_student"]) == 0
    assert os.stat(saved).st_mtime_ns == first_write
    assert figure.is_file()

    markdown = (tmp_path / "generalisation.md").read_text()
    report = json.loads((tmp_path / "generalisation.json").read_text())
    assert list(report["tasks"]) == ["moons_mlp", "teacher_student"]
    labels = ["normalized_mlp_digits"] + [f"Adam({rate})" for rate in ADAM_RATES]
    for task in report["tasks"]:
        assert list(table_rows(markdown, task)) == labels

    # Recomputed from the raw per-step losses: the mean over seeds of each run's mean
    # loss over steps 21..30, the tuned Adam the grid's lowest, the ratios against it.
    with np.load(saved) as data:
        final = {label: np.mean(data[f"{label}/train_loss"][:, 20:30]) for label in labels}
        assert data["Adam(1e-3)/train_loss"].shape == (2, 30)
    tuned = min(labels[1:], key=final.get)
    moons = report["tasks"]["moons_mlp"]
    assert moons["tuned_adam"]["train@30"] == tuned
    assert f"train@30 {tuned}" in markdown.split("## moons_mlp:")[1]
    rows = table_rows(markdown, "moons_mlp")
    for label in labels:
        cell = moons["optimisers"][label]["train@30"]
        np.testing.assert_allclose(cell["value"], final[label], rtol=1e-6)
        np.testing.assert_allclose(cell["vs_tuned"], final[label] / final[tuned], rtol=1e-6)
        np.testing.assert_allclose(cell["vs_default"], final[label] / final["Adam(1e-3)"],
                                   rtol=1e-6)
        # Columns: train@10 (value, /tuned, /Adam(1e-3)), then train@30's three.
        assert rows[label][4:6] == [f"{final[label] / final[tuned]:.3g}",
                                    f"{final[label] / final['Adam(1e-3)']:.3g}"]
    # Regression has no validation set: training columns only.
    assert "validation@30" in moons["metrics"]
    assert report["tasks"]["teacher_student"]["metrics"] == ["train@10", "train@30"]
    # The summary line counts the tasks where the learned optimiser's ratio is <= 1.
    at_or_below = sum(report["tasks"][task]["optimisers"]["normalized_mlp_digits"][
        "train@30"]["vs_default"] <= 1.0 for task in report["tasks"])
    assert (f"normalized_mlp_digits: train loss at or below Adam(1e-3) on {at_or_below}/2 tasks"
            in markdown)

"""benchmarks/learned/generalisation.py: its scores from hand-made curves, and a --quick run end to end."""

import json
import math
import os

import numpy as np
import pytest
from conftest import load_script

ADAM_RATES = ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1")
BUILTINS = ("AdamW", "ScheduleFreeAdamW", "Muon", "Lion")


@pytest.fixture(scope="module")
def benchmark():
    return load_script("benchmarks/learned", "generalisation")


def validated(train, validation):
    """The arrays ``evaluation.curves`` gives for one optimiser, validation after 0, 2, 4."""
    return {"train_loss": np.array(train, float), "validation_step": np.array([0, 2, 4]),
            "validation_loss": np.array(validation, float)}


def task(labels_to_arrays, steps, checkpoints, description):
    arrays = {f"{label}/{name}": value for label, entries in labels_to_arrays.items()
              for name, value in entries.items()}
    info = {"description": description,
            "settings": {"steps": steps, "repeats": 2, "checkpoints": checkpoints},
            "optimisers": {label: {"source": "test"} for label in labels_to_arrays}}
    return arrays, info


def hand_made(benchmark):
    """Two tasks, two seeds each: "a" with validation (checkpoints 2 and 4), "b" without
    (checkpoints 10 and 20, scored by training loss). Means, per checkpoint:

    ========== ======= ======= ======= =======
    label       a@2     a@4     b@10    b@20
    ========== ======= ======= ======= =======
    learned     0.35    1.0     0.5     0.2
    Adam(1e-3)  1.0     0.5     1.0     0.8
    Adam(1e-2)  0.7     0.6     0.5     0.4
    AdamW       0.9     0.55    0.5     0.9
    ========== ======= ======= ======= =======
    """
    ones = np.ones((2, 4))
    a = task({"learned": validated(ones, [[2.0, 0.3, 0.5], [1.0, 0.4, 1.5]]),
              "Adam(1e-3)": validated(ones, [[2.0, 1.0, 0.5], [2.0, 1.0, 0.5]]),
              "Adam(1e-2)": validated(ones, [[2.0, 0.6, 0.6], [2.0, 0.8, 0.6]]),
              "AdamW": validated(ones, [[2.0, 0.9, 0.5], [2.0, 0.9, 0.6]])},
             4, [2, 4], "with validation")

    def trained(first, second):  # ten steps at each loss: the TAIL means at 10 and 20
        return {"train_loss": np.tile(np.repeat([first, second], 10), (2, 1))}

    b = task({"learned": trained(0.5, 0.2), "Adam(1e-3)": trained(1.0, 0.8),
              "Adam(1e-2)": trained(0.5, 0.4), "AdamW": trained(0.5, 0.9)},
             20, [10, 20], "without validation")
    return {"a": benchmark.summarise_task(*a), "b": benchmark.summarise_task(*b)}


def test_tuned_adam_is_chosen_per_checkpoint_by_mean_loss(benchmark):
    summaries = hand_made(benchmark)
    a, b = summaries["a"], summaries["b"]
    assert a["headline"] == "validation"
    assert b["headline"] == "training (fresh data)"
    # Adam(1e-2) is best at step 2 (0.7 < 1.0), Adam(1e-3) at step 4 (0.5 < 0.6); AdamW,
    # though lower at a@2 than Adam(1e-3), is no rate of the grid.
    assert a["tuned_adam"] == {"2": "Adam(1e-2)", "4": "Adam(1e-3)"}
    assert b["tuned_adam"] == {"10": "Adam(1e-2)", "20": "Adam(1e-2)"}
    learned = a["optimisers"]["learned"]
    np.testing.assert_allclose([learned["loss"]["2"], learned["loss"]["4"]], [0.35, 1.0])
    np.testing.assert_allclose([learned["vs_tuned"]["2"], learned["vs_tuned"]["4"]],
                               [0.35 / 0.7, 1.0 / 0.5])
    np.testing.assert_allclose(b["optimisers"]["AdamW"]["vs_tuned"]["20"], 0.9 / 0.4)
    # Learned, then the built-ins at their defaults, then the rest of the grid.
    assert list(a["optimisers"]) == ["learned", "Adam(1e-3)", "AdamW", "Adam(1e-2)"]
    # The learned optimiser's second seed ends (1.5) above its start (1.0).
    assert [a["optimisers"][label]["diverged"] for label in a["optimisers"]] == [1, 0, 0, 0]


def test_summary_geometric_mean_wins_losses_and_floor(benchmark):
    by_optimiser = benchmark.summaries_by_optimiser(hand_made(benchmark))
    assert list(by_optimiser) == ["learned", "Adam(1e-3)", "AdamW"]  # not the other rates
    learned = by_optimiser["learned"]
    # Ratios to the tuned Adam: 0.5, 2, 1, 0.5.
    np.testing.assert_allclose(learned["geomean_vs_tuned"], (0.5 * 2 * 1 * 0.5) ** 0.25)
    assert (learned["cells"], learned["nonfinite_cells"]) == (4, 0)
    # Strictly below / above: against Adam(1e-3) only a@4 is lost; against AdamW b@10 ties.
    assert learned["versus"] == {"Adam(1e-3)": {"below": 3, "above": 1},
                                 "AdamW": {"below": 2, "above": 1}}
    assert (learned["diverged"], learned["runs"]) == (1, 4)
    # Above Adam(1e-3) at a@4, where it also rose 1.0 / 0.35 = 2.9x while Adam(1e-3) fell.
    assert learned["floor"] == {"holds": False, "above_default": ["a@4"], "late_jumps": ["a@4"]}
    adamw = by_optimiser["AdamW"]
    assert adamw["versus"] == {"Adam(1e-3)": {"below": 2, "above": 2}}
    assert "floor" not in adamw
    np.testing.assert_allclose(adamw["geomean_vs_tuned"],
                               (0.9 / 0.7 * 0.55 / 0.5 * 1.0 * 0.9 / 0.4) ** 0.25)
    line = benchmark.summary_line("learned", learned)
    assert "wins/losses vs Adam(1e-3) 3/1, vs AdamW 2/1" in line
    assert "floor fails (above Adam(1e-3) at a@4; late jumps at a@4)" in line


def test_late_jump_rule(benchmark):
    jumps = benchmark.late_jumps
    steps = [100, 300, 1000]
    # A rise of 1.8x where Adam(1e-3) falls: beyond 1.5 x max(1, 0.8).
    assert jumps([1.0, 0.5, 0.9], [1.0, 0.5, 0.4], steps) == [1000]
    # 1.8x where Adam(1e-3) itself rises 1.3x: not beyond 1.5 x 1.3 = 1.95.
    assert jumps([1.0, 1.8], [1.0, 1.3], steps[:2]) == []
    # Level while Adam(1e-3) halves: a stall, not a jump (the floor catches it).
    assert jumps([1.0, 1.0], [1.0, 0.5], steps[:2]) == []
    # Going non-finite is a jump; once non-finite, nothing more is reported.
    assert jumps([1.0, math.nan, math.nan], [1.0, 0.5, 0.4], steps) == [300]


def test_divergence_counts_non_finite_training_and_validation_above_start(benchmark):
    arrays = {"x/train_loss": np.array([[1.0, np.nan, 1.0, 1.0], [1.0] * 4, [1.0] * 4]),
              "x/validation_step": np.array([0, 4]),
              "x/validation_loss": np.array([[2.0, 1.0], [2.0, 2.5], [2.0, 1.9]])}
    assert benchmark.diverged_runs(arrays, "x") == 2


def table_rows(markdown, task):
    """``{optimiser: [cells]}`` of the first table in ``task``'s section."""
    section = markdown.split(f"## {task}:")[1].split("\n## ")[0].split("\n\n| optimiser")[1]
    rows = [line.strip("| ").split(" | ") for line in section.split("\n\n")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    return {cells[0]: cells[1:] for cells in rows}


@pytest.mark.slow
def test_quick_run_end_to_end(benchmark, tmp_path, monkeypatch):
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
    labels = (["normalized_mlp_digits", "Adam(1e-3)", *BUILTINS]
              + [f"Adam({rate})" for rate in ADAM_RATES if rate != "1e-3"])
    for name in report["tasks"]:
        assert list(report["tasks"][name]["optimisers"]) == labels
        assert list(table_rows(markdown, name)) == [
            "Adam(1e-3) (default)" if label == "Adam(1e-3)" else label for label in labels]

    # Validation only after steps 0, 10 and 30; the table recomputed from the saved losses.
    with np.load(saved) as data:
        assert list(data["Adam(1e-3)/validation_step"]) == [0, 10, 30]
        assert data["Muon/train_loss"].shape == (2, 30)
        means = {label: np.mean(data[f"{label}/validation_loss"][:, 1:], axis=0)
                 for label in labels}
    moons = report["tasks"]["moons_mlp"]
    assert moons["headline"] == "validation"
    grid = [f"Adam({rate})" for rate in ADAM_RATES]
    rows = table_rows(markdown, "moons_mlp")
    for column, step in enumerate(("10", "30")):
        tuned = min(grid, key=lambda label: means[label][column])
        assert moons["tuned_adam"][step] == tuned
        assert f"@{step} {tuned}" in markdown.split("## moons_mlp:")[1]
        for label in labels:
            cell = moons["optimisers"][label]
            np.testing.assert_allclose(cell["loss"][step], means[label][column], rtol=1e-6)
            ratio = means[label][column] / means[tuned][column]
            np.testing.assert_allclose(cell["vs_tuned"][step], ratio, rtol=1e-6)
            shown = "Adam(1e-3) (default)" if label == "Adam(1e-3)" else label
            assert rows[shown][2 * column + 1] == f"{ratio:.3g}"
    # Regression has no validation set: scored by training loss on fresh data.
    assert report["tasks"]["teacher_student"]["headline"] == "training (fresh data)"
    assert "headline: training (fresh data) loss" in markdown
    # One summary line per learned optimiser and built-in, over both tasks' 2 checkpoints.
    summary = report["summary"]
    assert list(summary) == ["normalized_mlp_digits", "Adam(1e-3)", *BUILTINS]
    learned = summary["normalized_mlp_digits"]
    assert learned["cells"] == 4
    wins = learned["versus"]["Adam(1e-3)"]
    assert f"vs Adam(1e-3) {wins['below']}/{wins['above']}" in markdown
    assert ("floor holds" if learned["floor"]["holds"] else "floor fails") in markdown

    # The figure draws the learned optimisers this command names, not every one saved.
    import matplotlib.axes

    drawn, plot = set(), matplotlib.axes.Axes.plot

    def recording(axis, *args, **kwargs):
        drawn.add(kwargs.get("label"))
        return plot(axis, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    other = [*arguments[:3], "--pretrained", "controlled_adam_decay", *arguments[5:]]
    assert benchmark.main([*other, "--tasks", "moons_mlp"]) == 0
    assert {"controlled_adam_decay", "Adam(1e-3) (default)", "Muon"} <= drawn
    assert "normalized_mlp_digits" not in drawn


def test_keras_entries_build_their_optimiser_and_bad_ones_stop_with_one_line(benchmark, tmp_path,
                                                                            capsys):
    schedule = {"module": "keras.optimizers.schedules", "class_name": "InverseTimeDecay",
                "config": {"initial_learning_rate": 0.01, "decay_steps": 100, "decay_rate": 1.0}}
    spec = {"class_name": "Adam", "config": {"learning_rate": schedule}}
    factories = benchmark.optimizer_factories([], [], [("decayed", spec)])
    source, make_optimizer, _ = factories["decayed"]
    rate = make_optimizer(0).learning_rate  # Keras evaluates the schedule at the step count
    assert source == "keras" and float(rate) == pytest.approx(0.01)
    assert benchmark.kind_of("decayed") == "learned"  # scored, floor verdict included
    arguments = ["--quick", "--out", str(tmp_path), "--tasks", "moons_mlp", "--pretrained"]
    assert benchmark.main([*arguments, "--keras",
                           'odd={"class_name": "Adam", "config": {"learning_rate": -1}}']) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit):
        benchmark.main([*arguments, "--keras", "odd={not json"])
    assert not (tmp_path / "generalisation").exists()

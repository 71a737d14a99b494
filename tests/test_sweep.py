"""sweep.py: a grid's points and table, a killed sweep resumed, bad input before any
training, random draws within bounds and reproducible by seed, --overwrite that keeps a
folder's other files."""

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from l2o import api, cli, locks
from l2o import sweep as sweep_module
from l2o.config import parse_override
from l2o.validation import ConfigError

RATES = (1e-3, 3e-2)
DEPTHS = (1, 2)
GRID = [f"optimizer/config/learning_rate={','.join(map(str, RATES))}",
        f"training/depth={','.join(map(str, DEPTHS))}"]


@pytest.fixture
def config(tmp_path):
    """A 3-d quadratic meta-trained for one short period: a point takes about a second."""
    path = tmp_path / "quadratic.yaml"
    path.write_text(yaml.safe_dump({
        "problems": [{"target": "quadratic", "kwargs": {"dim": 3}}],
        "network": {"layers": [4]},
        "training": {"depth": 1},
        "strategy": {"num_periods": 1, "epochs_per_period": 1, "unroll_distribution": 3,
                     "validation_unroll": 3, "validation_repeat": 1},
        "directory": str(tmp_path / "run"),
    }))
    return str(path)


class Calls:
    """Counts api.train and api.resume calls, passing them on; can interrupt the n-th train."""

    def __init__(self, monkeypatch, interrupt_at=None):
        self.train, self.resume, self.interrupt_at = 0, 0, interrupt_at
        real_train, real_resume = api.train, api.resume

        def train(*args, **kwargs):
            self.train += 1
            if self.train == self.interrupt_at:
                raise KeyboardInterrupt  # as a kill would, before this point finishes
            return real_train(*args, **kwargs)

        def resume(*args, **kwargs):
            self.resume += 1
            return real_resume(*args, **kwargs)

        monkeypatch.setattr(api, "train", train)
        monkeypatch.setattr(api, "resume", resume)


@pytest.mark.slow
def test_grid_sweep_resumes_after_a_kill_and_tables_its_points(config, tmp_path, monkeypatch):
    directory = tmp_path / "run_sweep"  # the default: the config's directory + _sweep
    with pytest.raises(KeyboardInterrupt), monkeypatch.context() as patch:
        Calls(patch, interrupt_at=3)
        sweep_module.sweep(config, ["training/seed=3"], grid=GRID, say=lambda text: None)
    assert len((directory / "results.jsonl").read_text().splitlines()) == 2

    calls, said = Calls(monkeypatch), []
    records = sweep_module.sweep(config, ["training/seed=3"], grid=GRID, say=said.append)
    assert (calls.train, calls.resume) == (2, 0)  # only the two unfinished points trained
    assert "2 of 4 points already finished" in said[0]
    by_point = sorted(records, key=lambda record: record["point"])
    assert [(r["overrides"]["optimizer/config/learning_rate"], r["overrides"]["training/depth"])
            for r in by_point] == list(itertools.product(RATES, DEPTHS))
    for record in by_point:
        run = json.loads((directory / f"point_{record['point']:04d}" / "config.json").read_text())
        assert run["optimizer"]["config"]["learning_rate"] == record["overrides"][
            "optimizer/config/learning_rate"]
        assert run["training"]["depth"] == record["overrides"]["training/depth"]
        assert run["training"]["seed"] == 3
        assert math.isfinite(record["metric"]) and record["metric"] == record["best_validation"]
    metrics = [record["metric"] for record in records]
    assert metrics == sorted(metrics)
    rows = (directory / "results.md").read_text().splitlines()[2:]
    assert [float(row.split("|")[5]) for row in rows] == pytest.approx(metrics, rel=1e-3)
    spec = json.loads((directory / "sweep.json").read_text())
    assert spec["search"] == "grid" and len(spec["points"]) == 4

    # A finished sweep reruns nothing; a point whose line a kill lost resumes its run.
    lines = (directory / "results.jsonl").read_text().splitlines()
    (directory / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    calls, said = Calls(monkeypatch), []
    again = sweep_module.sweep(config, ["training/seed=3"], grid=GRID, say=said.append)
    assert (calls.train, calls.resume) == (0, 1)
    assert any("resuming after its last finished period" in line for line in said)
    assert [r["metric"] for r in again] == pytest.approx(metrics)

    with pytest.raises(ConfigError, match="holds another sweep"):
        sweep_module.sweep(config, ["training/seed=4"], grid=GRID)


def test_bad_key_or_value_fails_before_any_point_trains(config, tmp_path, monkeypatch, capsys):
    calls = Calls(monkeypatch)
    with pytest.raises(ConfigError, match=r"point 1 \(training/depth=-1\): training/depth"):
        sweep_module.sweep(config, grid=["training/depth=1,-1"])
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        sweep_module.sweep(config, random=["training/detph=randint(1,3)"], points=2)
    assert calls.train == 0 and not (tmp_path / "run_sweep").exists()
    with pytest.raises(SystemExit) as exit_status:  # sweep.py's entry point, in this process
        cli.sweep([config, "--grid", "strategy/num_periodz=1,2"])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        ("error: point 0 (strategy/num_periodz=1): strategy/num_periodz: unknown key; did you "
         "mean 'num_periods'?")]
    assert calls.train == 0 and not (tmp_path / "run_sweep").exists()


def test_random_search_draws_within_bounds_reproducibly(config):
    axes = ["optimizer/config/learning_rate=loguniform(1e-4,1e-1)",
            "estimator/sigma=uniform(0.01,0.5)", "training/depth=randint(1,3)",
            "network/layers=choice([4],[4,4])"]
    with open(config) as handle:
        particles = {**yaml.safe_load(handle), "estimator_constructor": "es"}
    config = config.replace("quadratic.yaml", "quadratic_es.yaml")
    with open(config, "w") as handle:
        yaml.safe_dump(particles, handle)
    spec, resolved = sweep_module.plan(config, random=axes, points=40, seed=7)
    points = spec["points"]
    rates = np.array([point["optimizer/config/learning_rate"] for point in points])
    assert len(points) == len(resolved) == 40
    assert np.all((rates >= 1e-4) & (rates <= 1e-1)) and rates.min() < 1e-3 < rates.max()
    assert all(0.01 <= point["estimator/sigma"] <= 0.5 for point in points)
    assert {point["training/depth"] for point in points} == {1, 2, 3}
    assert {tuple(point["network/layers"]) for point in points} == {(4,), (4, 4)}
    assert [c["network"]["layers"] for c in resolved] == [p["network/layers"] for p in points]
    assert sweep_module.plan(config, random=axes, points=40, seed=7)[0]["points"] == points
    assert sweep_module.plan(config, random=axes, points=40, seed=8)[0]["points"] != points
    for bad in ("estimator/sigma=loguniform(0,1)", "estimator/sigma=uniform(2,1)",
                "estimator/sigma=normal(0,1)"):
        with pytest.raises(ConfigError, match="estimator/sigma"):
            sweep_module.plan(config, random=[bad], points=2)


def test_non_finite_grid_values_reach_each_point_as_train_py_reads_them(config):
    values = {"network/output_scale": math.inf, "estimator/sigma": -math.inf,
              "network/layers": [math.nan, {"a": math.inf}]}
    overrides = sweep_module.point_overrides(values, "d")
    assert overrides[:2] == ["network/output_scale=.inf", "estimator/sigma=-.inf"]
    parsed = {tuple(keys): value for keys, value in map(parse_override, overrides[:2])}
    assert parsed == {("network", "output_scale"): math.inf, ("estimator", "sigma"): -math.inf}
    nan, mapping = parse_override(overrides[2])[1]
    assert math.isnan(nan) and mapping == {"a": math.inf}
    # .inf is refused as train.py refuses it, not as the string 'Infinity'.
    with pytest.raises(ConfigError) as direct:
        api.resolve(config, ["network/output_scale=.inf"])
    with pytest.raises(ConfigError) as swept:
        sweep_module.plan(config, grid=["network/output_scale=.inf,0.1"])
    assert str(swept.value) == f"point 0 (network/output_scale=.inf): {direct.value}"


def test_a_second_sweep_on_a_directory_is_refused_while_one_runs(config, tmp_path,
                                                                 monkeypatch):
    calls = Calls(monkeypatch)
    lock = locks.RunLock(tmp_path / "run_sweep")
    lock.acquire()  # as a sweep running there holds it
    try:
        with pytest.raises(locks.RunLocked, match=f"process {os.getpid()} is writing"):
            sweep_module.sweep(config, grid=GRID)
    finally:
        lock.release()
    assert calls.train == 0


def test_grid_values_may_be_lists():
    assert sweep_module.parse_grid("network/layers=[4],[4,4],{a: 1, b: 2}") == (
        "network/layers", [[4], [4, 4], {"a": 1, "b": 2}])


def test_overwrite_deletes_only_what_a_sweep_wrote(config, tmp_path, monkeypatch, capsys):
    """--overwrite on a folder holding other files keeps them, as train.py's does: it deletes
    sweep.json, the results and the point directories, nothing else."""
    def train(point_config, overwrite=False):  # a point's run, without the training
        os.makedirs(point_config["directory"], exist_ok=True)
        (Path(point_config["directory"]) / "config.json").write_text("{}")
        return {"period": 0, "best_validation": 1.0}

    monkeypatch.setattr(api, "train", train)
    directory = tmp_path / "mixed"
    (directory / "sub").mkdir(parents=True)
    (directory / "precious.txt").write_text("keep me")
    (directory / "sub" / "notes.txt").write_text("and me")
    (directory / "point_notes").mkdir()  # not a point directory: a sweep never writes it

    with pytest.raises(SystemExit) as exit_status:
        cli.sweep([config, "--grid", "training/depth=1,2", "--directory", str(directory)])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {directory} exists and holds no sweep.json: choose --directory, or pass "
        f"--overwrite to sweep there (its other files are kept)\n")

    cli.sweep([config, "--grid", "training/depth=1,2", "--directory", str(directory),
               "--overwrite"])
    (directory / "point_0001" / "left.txt").write_text("a point's own file")
    cli.sweep([config, "--grid", "training/depth=3", "--directory", str(directory),
               "--overwrite"])
    assert sorted(entry.name for entry in directory.iterdir()) == [
        "point_0000", "point_notes", "precious.txt", "results.jsonl", "results.md",
        "sub", "sweep.json"]
    assert (directory / "precious.txt").read_text() == "keep me"
    assert (directory / "sub" / "notes.txt").read_text() == "and me"
    assert json.loads((directory / "sweep.json").read_text())["axes"] == {"training/depth": [3]}
    assert len((directory / "results.jsonl").read_text().splitlines()) == 1


def test_the_table_shows_a_run_that_collapsed_after_its_best_period():
    """Ranked by its best validation, a run whose last period went far above it says so."""
    spec = {"axes": {"training/depth": [1, 2]}, "metric": "best_validation"}
    records = [{"point": 0, "overrides": {"training/depth": 1}, "metric": -2.0,
                "best_validation": -2.0, "last_validation": 5.0, "periods": 3, "seconds": 1.0},
               {"point": 1, "overrides": {"training/depth": 2}, "metric": -1.5,
                "best_validation": -1.5, "last_validation": -1.49, "periods": 3,
                "seconds": 1.0}]
    rows = sweep_module.table(spec, records).splitlines()
    assert "last validation" in rows[0]
    assert rows[2].split("|")[5].strip() == "5 (worse than its best)"
    assert rows[3].split("|")[5].strip() == "-1.49"

"""train.py's --dry-run and --overwrite through the command's entry function (Ctrl-C is in
test_kill.py)."""

import json
import os

import numpy as np
import pytest
from conftest import tiny_config

from l2o import checkpoints, cli
from l2o.config import load_file, resolve


def write_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_config(tmp_path / "run", strategy={"num_periods": 1})))
    return str(path)


def contents(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {os.path.relpath(os.path.join(root, name), folder):
            open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path)
    cli.train([config, "--dry-run", "strategy/num_periods=5"])
    printed = json.loads(capsys.readouterr().out)
    resolved = resolve(load_file(config), ["strategy/num_periods=5"])
    assert printed == json.loads(json.dumps(resolved))
    assert printed["strategy"]["num_periods"] == 5 and printed["network"]["layers"] == [20, 20]
    assert os.listdir(tmp_path) == ["config.json"]


@pytest.mark.slow
def test_overwrite_starts_afresh_and_without_it_the_run_is_kept(tmp_path, capsys):
    config, run = write_config(tmp_path), tmp_path / "run"
    cli.train([config])
    first_weights, _ = checkpoints.load(str(run / "checkpoints" / "period_0000.npz"))
    (run / "checkpoints" / "period_0007.npz").write_bytes(b"from an older, longer run")
    kept = contents(run)
    with pytest.raises(SystemExit) as refused:
        cli.train([config, "training/seed=1"])
    assert refused.value.code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert contents(run) == kept

    cli.train([config, "--overwrite", "training/seed=1"])
    assert not (run / "checkpoints" / "period_0007.npz").exists()
    assert json.loads((run / "config.json").read_text())["training"]["seed"] == 1
    lines = (run / "summary.jsonl").read_text().splitlines()
    assert [json.loads(line)["period"] for line in lines] == [0]
    weights, _ = checkpoints.load(str(run / "checkpoints" / "period_0000.npz"))
    assert any(not np.array_equal(weights[key], first_weights[key]) for key in weights)


def test_overwrite_refuses_to_delete_the_working_directory(tmp_path, monkeypatch, capsys):
    config, run = write_config(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    monkeypatch.chdir(run)
    with pytest.raises(SystemExit) as refused:
        cli.train([config, "--overwrite", "directory=."])
    assert refused.value.code == 2
    assert "--overwrite would delete ." in capsys.readouterr().err
    assert os.listdir(run) == ["config.json"]

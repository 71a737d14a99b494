"""The commands: bad input gives one clear line and exit 2, and writes nothing."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config


def run_command(script, *arguments):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *arguments],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def write_config(tmp_path, **sections):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "run", **sections)))
    return str(path)


def assert_one_clear_error(result, expected):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("override, expected", [
    ("strategy/epochs_per_perod=5", ("strategy/epochs_per_perod: unknown key; did you mean "
                                     "'epochs_per_period'?")),
    ("training/depth=lots", "training/depth: expected int"),
    ("problems/0/kwargs/dataset=./missing/mnist", "problems/0/kwargs/dataset: no such folder"),
])
def test_train_rejects_bad_input_before_writing(tmp_path, override, expected):
    result = run_command("train.py", write_config(tmp_path), override)
    assert_one_clear_error(result, expected)
    assert not (tmp_path / "run").exists()


def test_resume_of_a_directory_without_a_run(tmp_path):
    assert_one_clear_error(run_command("resume.py", str(tmp_path)), "not a run directory")


def test_evaluate_of_a_missing_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(tmp_path)))
    assert_one_clear_error(run_command("evaluate.py", str(tmp_path)), "no 'best' checkpoint")


def test_missing_config_file(tmp_path):
    assert_one_clear_error(run_command("train.py", str(tmp_path / "nope.yaml")),
                           "config file not found")


def test_resume_refuses_overrides_that_do_not_match_the_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(tmp_path)))
    assert_one_clear_error(run_command("resume.py", str(tmp_path), "network/layers=[4]"),
                           "network/layers: cannot change on resume")

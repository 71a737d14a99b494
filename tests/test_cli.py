"""The commands: bad input gives one clear line and exit 2, and writes nothing."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config

from l2o import cli


def run_command(script, *arguments, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *arguments],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                          env=env)


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
@pytest.mark.slow
def test_train_rejects_bad_input_before_writing(tmp_path, override, expected):
    result = run_command("train.py", write_config(tmp_path), override)
    assert_one_clear_error(result, expected)
    assert not (tmp_path / "run").exists()


def test_resume_of_a_directory_without_a_run(tmp_path):
    assert_one_clear_error(run_command("resume.py", str(tmp_path)), "not a run directory")


@pytest.mark.slow
def test_evaluate_of_a_missing_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(tmp_path)))
    assert_one_clear_error(run_command("evaluate.py", str(tmp_path)), "no 'best' checkpoint")


@pytest.mark.parametrize("command", ["evaluate", "baseline"])
def test_a_run_directory_that_does_not_exist_is_named_as_such(tmp_path, capfd, command):
    missing = tmp_path / "runs" / "nonexistent"
    with pytest.raises(SystemExit) as raised:
        getattr(cli, command)([str(missing)])
    assert raised.value.code == 2
    assert capfd.readouterr().err == (f"error: {missing}: no run directory (nor a config file) "
                                      f"there; give the directory a run trained in (its "
                                      f"config's directory)\n")
    assert not missing.exists()


# Runs a command in a fresh process; prints its exit status and whether Keras and
# TensorFlow were imported.
IMPORTS = ("import sys\n"
           "from l2o import cli\n"
           "code = 0\n"
           "try:\n"
           "    getattr(cli, sys.argv[1])(sys.argv[2:])\n"
           "except SystemExit as exit_status:\n"
           "    code = exit_status.code\n"
           "print(code, 'keras' in sys.modules, 'tensorflow' in sys.modules)\n")


@pytest.mark.parametrize("command, make, expected", [
    ("train", lambda tmp: [str(tmp / "nope.yaml")], "config file not found: "),
    ("train", lambda tmp: [write_text(tmp, "a.yaml", "problems: [\n")], "not valid YAML"),
    ("train", lambda tmp: [write_text(tmp, "a.yaml", "problemz: []\n")],
     "a.yaml: problemz: unknown key; did you mean 'problems'?"),
    ("train", lambda tmp: ["quickstart", "strategyy/num_periods=2"],
     "strategyy: unknown key; did you mean 'strategy'?"),
    ("sweep", lambda tmp: [write_text(tmp, "a.json", "{"), "--grid", "training/depth=1,2"],
     "a.json: not valid JSON"),
    ("resume", lambda tmp: [str(tmp / "nothing")], "not a run directory"),
    ("evaluate", lambda tmp: [str(tmp / "nothing"), "--checkpoint", "last"],
     "no run directory"),
], ids=["missing-file", "yaml", "section", "override", "sweep-json", "resume", "evaluate"])
def test_config_errors_come_before_keras_is_imported(tmp_path, command, make, expected):
    result = subprocess.run([sys.executable, "-c", IMPORTS, command, *make(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.stdout == "2 False False\n", result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr


def test_list_and_help_need_no_keras():
    for argv in (["train", "--list"], ["resume", "--help"]):
        result = subprocess.run([sys.executable, "-c", IMPORTS, *argv], capture_output=True,
                                text=True, cwd=ROOT, timeout=120, check=False)
        assert result.stdout.splitlines()[-1] == "0 False False", result.stderr


def write_text(folder, name, text):
    (folder / name).write_text(text)
    return str(folder / name)


def test_missing_config_file(tmp_path):
    assert_one_clear_error(run_command("train.py", str(tmp_path / "nope.yaml")),
                           "config file not found")


@pytest.mark.slow
def test_resume_refuses_overrides_that_do_not_match_the_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config(tmp_path)))
    assert_one_clear_error(run_command("resume.py", str(tmp_path), "network/layers=[4]"),
                           "network/layers: cannot change on resume")


@pytest.mark.parametrize("script", ["train.py", "resume.py", "evaluate.py", "baseline.py",
                                    "sweep.py"])
def test_an_unknown_keras_backend_is_one_line_naming_the_variable(script):
    result = run_command(script, "--help", env={**os.environ, "KERAS_BACKEND": "nope"})
    assert_one_clear_error(result, "KERAS_BACKEND=nope: l2o runs on Keras's tensorflow or jax "
                                   "backend; set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")


@pytest.mark.slow
def test_without_tensorflow_the_commands_choose_jax():
    """A JAX-only install needs no KERAS_BACKEND: here TensorFlow cannot be imported."""
    pytest.importorskip("jax")
    snippet = ("import sys; sys.modules['tensorflow'] = None\n"
               "from l2o.cli import train\n"
               "train(['--list'])\n"
               "import keras; print('backend:', keras.backend.backend())\n")
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "quickstart" in result.stdout and result.stdout.endswith("backend: jax\n")


def test_choose_backend_leaves_a_good_choice_and_says_what_to_install(monkeypatch):
    from l2o import cli

    assert cli.choose_backend({"KERAS_BACKEND": "jax"}) is None
    assert cli.choose_backend({"KERAS_BACKEND": "tensorflow"}) is None
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.choose_backend({"KERAS_BACKEND": "jax"}) == (
        'KERAS_BACKEND=jax: jax is not installed; pip install "l2o[jax]", or set '
        'KERAS_BACKEND to the backend installed')
    environ = {}
    assert cli.choose_backend(environ) == (
        'neither TensorFlow nor JAX is installed: install one (pip install "l2o[tensorflow]" '
        'or "l2o[jax]") and set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax')
    assert environ == {}

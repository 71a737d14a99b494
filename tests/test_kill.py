"""A real training process killed (SIGKILL) or interrupted (Ctrl-C) at several points, then
resumed, ends exactly where an uninterrupted run ends.

The commands run in subprocesses through ``INTERRUPTED_CLI``, which signals itself at a chosen
moment: inside a truncation, before a checkpoint file is written, or after it is written but
before the rename that puts it in place.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT, tiny_config

from l2o import checkpoints
from l2o.backend.summaries import read_scalars

# python -c INTERRUPTED_CLI SIGNAL MOMENT FILE N COMMAND ARGS...: runs l2o.cli.COMMAND(ARGS) and
# sends itself SIGNAL at the N-th checkpoints.save of a file named FILE, at MOMENT: "write" on
# the call (nothing of FILE written yet); "rename" just before the rename that would put FILE
# in place (its content written under another name); "truncation" inside the second truncation
# of training after that save.
INTERRUPTED_CLI = r"""
import os, signal, sys, threading, time

import tqdm.std

from l2o import checkpoints, cli

signal_name, moment, name, nth, command, *argv = sys.argv[1:]
# A background job of a shell without job control (how CI may start the suite) inherits
# SIGINT ignored, and Python keeps it so; a user's Ctrl-C meets the default handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
main_thread, calls, ticks = threading.main_thread().ident, 0, -1
original_save, original_update = checkpoints.save, tqdm.std.tqdm.update


def die(*args):
    os.kill(os.getpid(), getattr(signal, signal_name))


def die_inside_tensorflow():
    while True:
        frame = sys._current_frames().get(main_thread)
        while frame is not None:
            if f"{os.sep}tensorflow{os.sep}" in frame.f_code.co_filename:
                return die()
            frame = frame.f_back
        time.sleep(1e-4)


def dying_before_renaming_onto_name(rename):
    def renamed(source, target, **options):
        if os.path.basename(target) == name:
            die()
        return rename(source, target, **options)
    return renamed


def save(path, arrays, info, **options):
    global calls, ticks
    calls += os.path.basename(path) == name
    hit = os.path.basename(path) == name and calls == int(nth)
    if hit and moment == "write":
        die()
    if hit and moment == "rename":
        os.replace = dying_before_renaming_onto_name(os.replace)
        os.rename = dying_before_renaming_onto_name(os.rename)
    original_save(path, arrays, info, **options)
    if hit and moment == "truncation":
        ticks = 0


def update(bar, n=1):  # the progress bar ticks once per finished truncation
    global ticks
    if ticks >= 0:
        ticks += 1
        if ticks == 1:
            threading.Thread(target=die_inside_tensorflow, daemon=True).start()
    return original_update(bar, n)


checkpoints.save, tqdm.std.tqdm.update = save, update
getattr(cli, command)(argv)
"""
TIMING = ("inner_steps_per_second",)  # metrics that measure the machine, not the run
PERIODS = 3


def run_cli(*arguments, expect):
    result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, check=False)
    assert result.returncode == expect, result.stderr[-3000:]
    return result


def interrupted(signal_name, moment, name, nth, command, *argv):
    expect = 130 if signal_name == "SIGINT" else -signal.SIGKILL
    return run_cli("-c", INTERRUPTED_CLI, signal_name, moment, name, str(nth), command, *argv,
                   expect=expect)


def write_config(path, directory):
    path.write_text(yaml.safe_dump(tiny_config(directory, strategy={"num_periods": PERIODS})))
    return str(path)


def without_timing(record):
    return {key: value for key, value in record.items() if key not in TIMING}


def summary_periods(run):
    return [json.loads(line)["period"]
            for line in (run / "summary.jsonl").read_text().splitlines()]


def finished_period(run):
    """The period whose state last.npz holds; None without a last.npz."""
    last = run / "checkpoints" / "last.npz"
    return checkpoints.load(str(last))[1]["period"] if last.exists() else None


def assert_same_outcome(run, reference):
    """Checkpoints (every array; metadata but timing) and logs equal the uninterrupted run's."""
    folder, reference_folder = run / "checkpoints", reference / "checkpoints"
    assert sorted(os.listdir(folder)) == sorted(os.listdir(reference_folder))
    for name in os.listdir(reference_folder):
        arrays, info = checkpoints.load(str(folder / name))
        expected_arrays, expected_info = checkpoints.load(str(reference_folder / name))
        assert arrays.keys() == expected_arrays.keys(), name
        for key, value in expected_arrays.items():
            np.testing.assert_array_equal(arrays[key], value, err_msg=f"{name}: {key}")
        assert without_timing(info) == without_timing(expected_info), name
    records, expected = ([json.loads(line) for line in (r / "summary.jsonl").read_text()
                          .splitlines()] for r in (run, reference))
    assert [record["period"] for record in records] == list(range(PERIODS))
    assert [without_timing(r) for r in records] == [without_timing(r) for r in expected]
    scalars = read_scalars(run / "tensorboard")
    expected_scalars = read_scalars(reference / "tensorboard")
    assert scalars.keys() == expected_scalars.keys()
    for (tag, step), values in expected_scalars.items():
        assert len(scalars[tag, step]) == len(values), f"tensorboard {tag} step {step}"
        if tag not in TIMING:
            assert scalars[tag, step] == values, f"tensorboard {tag} step {step}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    run_cli("train.py", write_config(folder / "config.yaml", folder / "run"), expect=0)
    return folder / "run"


@pytest.mark.slow
def test_sigkill_at_every_stage_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", run)

    # Inside a truncation of period 1 (0-based): period 0 stays the last finished one.
    interrupted("SIGKILL", "truncation", "last.npz", 1, "train", config)
    assert summary_periods(run) == [0] and finished_period(run) == 0
    assert not (run / "checkpoints" / "period_0001.npz").exists()

    # Writing period 1's first checkpoint, before its rename.
    before = set(os.listdir(run / "checkpoints"))
    interrupted("SIGKILL", "rename", "period_0001.npz", 1, "resume", str(run))
    assert set(os.listdir(run / "checkpoints")) - before, "the write should have begun"
    assert not (run / "checkpoints" / "period_0001.npz").exists()

    # Writing last.npz of period 1, before the rename that puts it in place: the period's
    # weights and summary line are out, its resumable state is not. The summary line is then
    # torn in half, as a kill during its append would leave it.
    interrupted("SIGKILL", "rename", "last.npz", 1, "resume", str(run))
    assert summary_periods(run) == [0, 1] and finished_period(run) in (0, None)
    text = (run / "summary.jsonl").read_text()
    (run / "summary.jsonl").write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])

    # Period 1 redone; period 2's summary line is out, its last.npz not begun.
    interrupted("SIGKILL", "write", "last.npz", 2, "resume", str(run))
    assert summary_periods(run) == [0, 1, 2] and finished_period(run) == 1

    run_cli("resume.py", str(run), expect=0)
    assert_same_outcome(run, reference)


@pytest.mark.slow
def test_ctrl_c_names_resume_and_keeps_the_last_finished_period(tmp_path, reference):
    run = tmp_path / "run"
    result = interrupted("SIGINT", "truncation", "last.npz", 1, "train",
                         write_config(tmp_path / "config.yaml", run))
    assert ("interrupted: the last finished period is checkpointed; continue with resume.py"
            in result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert summary_periods(run) == [0] and finished_period(run) == 0
    run_cli("resume.py", str(run), expect=0)
    assert_same_outcome(run, reference)

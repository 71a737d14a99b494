"""Checkpoint files: damage is one clear error, writes are durable, JSON is standard.

No training here: files written by ``checkpoints.save``, then damaged.
"""

import errno
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from l2o import checkpoints, runs
from l2o.checkpoints import CheckpointError, CheckpointMismatch
from l2o.config import resolve
from l2o.validation import ConfigError

ARRAYS = {"meta/kernel": np.arange(4000, dtype=np.float32).reshape(40, 100),
          "meta/bias": np.ones(100, np.float32)}
INFO = {"period": 3, "strategy": {"period": 3, "best_validation": 0.5}}


def written(tmp_path):
    path = str(tmp_path / "last.npz")
    checkpoints.save(path, ARRAYS, INFO)
    return path


def truncate_half(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


def fill_with_zeros(path):
    with open(path, "r+b") as handle:
        handle.write(bytes(os.path.getsize(path)))


def overwrite_200_bytes(where):
    """Overwrites 200 bytes at an offset, or inside an entry's data (a name)."""
    def damage(path):
        offset = where
        if isinstance(where, str):
            with zipfile.ZipFile(path) as archive:
                offset = archive.getinfo(f"{where}.npy").header_offset + 100
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(b"A" * min(200, os.path.getsize(path) - offset))
    return damage


def drop_entry(name):
    def damage(path):
        with np.load(path) as data:
            entries = {key: data[key] for key in data.files if key != name}
        np.savez(path, **entries)
    return damage


@pytest.mark.parametrize("damage, expected", [
    (truncate_half, "not an .npz archive"),
    (fill_with_zeros, "not an .npz archive"),
    (overwrite_200_bytes(0), "not an .npz archive"),  # the first entry's header and name
    (overwrite_200_bytes("meta/kernel"), "entry 'meta/kernel' is corrupt"),
    (overwrite_200_bytes("meta/bias"), "entry 'meta/bias' is corrupt"),
    (lambda path: open(path, "w").close(), "not an .npz archive"),
    (drop_entry(checkpoints.INFO), "no __info__ entry"),
], ids=["truncated", "zero-filled", "overwritten-start", "overwritten-kernel",
        "overwritten-bias", "empty", "no-info"])
def test_a_damaged_file_is_one_short_error_naming_it(tmp_path, damage, expected):
    path = written(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError) as raised:
        checkpoints.load(path)
    message = str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert message.startswith(f"{path}: damaged checkpoint: ") and expected in message, message
    assert "\n" not in message and len(message) < len(path) + 120 and "AAAA" not in message


def test_a_garbled_entry_name_is_not_shown(tmp_path):
    """200 bytes over the zip's directory: a name 16 KB long, read from the data after it."""
    path = str(tmp_path / "last.npz")
    checkpoints.save(path, {f"meta/w{i}": np.full(3, i) for i in range(20)}, INFO)
    with open(path, "rb") as handle:
        directory = [match.start() for match in re.finditer(b"PK\x01\x02", handle.read())]
    overwrite_200_bytes(directory[5] + 28)(path)  # from the 6th entry's name length on
    with pytest.raises(CheckpointError) as raised:
        checkpoints.load(path)
    assert str(raised.value) == f"{path}: damaged checkpoint: an entry (garbled name) is corrupt"


def test_a_missing_entry_is_named_where_it_is_looked_up(tmp_path):
    path = written(tmp_path)
    drop_entry("meta/bias")(path)
    arrays, info = checkpoints.load(path)  # readable: the file itself is a valid archive
    np.testing.assert_array_equal(arrays["meta/kernel"], ARRAYS["meta/kernel"])
    with pytest.raises(CheckpointError, match=r"last.npz: incomplete checkpoint: no entry "
                                              r"'meta/bias'"):
        arrays["meta/bias"]
    with pytest.raises(CheckpointError, match="no entry 'trainer'"):
        info["trainer"]
    with pytest.raises(CheckpointError, match="no entry 'stage'"):
        info["strategy"]["stage"]


def test_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="last.npz: no such checkpoint file"):
        checkpoints.load(str(tmp_path / "last.npz"))


def test_save_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    sync, replace = os.fsync, os.replace

    def spy_sync(descriptor):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))))
        sync(descriptor)

    def spy_replace(source, target):
        events.append(("replace", os.path.basename(source), os.path.basename(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", spy_sync)
    monkeypatch.setattr(os, "replace", spy_replace)
    path = written(tmp_path)
    checkpoints.save(path, ARRAYS, {**INFO, "period": 4}, previous=str(tmp_path / "prev.npz"))
    folder = os.path.basename(tmp_path)
    assert events == [
        ("fsync", "last.npz.tmp.npz"), ("replace", "last.npz.tmp.npz", "last.npz"),
        ("fsync", folder),
        ("fsync", "last.npz.tmp.npz"), ("replace", "last.npz", "prev.npz"),
        ("replace", "last.npz.tmp.npz", "last.npz"), ("fsync", folder)]
    assert checkpoints.load(path)[1]["period"] == 4
    assert checkpoints.load(str(tmp_path / "prev.npz"))[1]["period"] == 3


def full_disk(monkeypatch, after=0):
    """Makes writes fail as a full disk does, at the sync of the ``after``-th file on."""
    sync, calls = os.fsync, []

    def no_space(descriptor):
        calls.append(descriptor)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        sync(descriptor)

    monkeypatch.setattr(os, "fsync", no_space)


@pytest.mark.parametrize("write", ["save", "save-previous", "write_text", "append_line"])
def test_a_write_on_a_full_disk_names_the_file_and_leaves_no_temporary_file(
        tmp_path, monkeypatch, write):
    path = written(tmp_path)
    before = Path(path).read_bytes()
    text = str(tmp_path / "summary.jsonl")
    full_disk(monkeypatch)
    target = text if write in ("write_text", "append_line") else path
    with pytest.raises(OSError) as raised:
        if write == "write_text":
            checkpoints.write_text(text, "{}")
        elif write == "append_line":
            checkpoints.append_line(text, "{}")
        else:
            checkpoints.save(path, ARRAYS, {**INFO, "period": 4},
                             previous=str(tmp_path / "prev.npz") if "previous" in write
                             else None)
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == f"[Errno 28] No space left on device: '{target}'"
    assert sorted(os.listdir(tmp_path)) == ["last.npz"] + (["summary.jsonl"]
                                                           if write == "append_line" else [])
    assert Path(path).read_bytes() == before


def test_the_commands_name_the_file_of_an_os_error():
    from l2o.cli import os_error_line

    assert os_error_line(OSError(errno.ENOSPC, "No space left on device", "runs/x/last.npz")) \
        == ("runs/x/last.npz: No space left on device; free some space, then run the command "
            "again (resume.py continues a run from its last finished period)")
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "runs/x")) == (
        "runs/x: Permission denied; choose a folder you can write to")


def test_json_holds_null_for_non_finite_numbers():
    record = {"loss": float("nan"), "best": float("inf"), "curve": [1.0, -np.inf, np.float64(2)],
              "nested": {"x": np.float32("nan")}, "flag": True, "name": "a"}
    text = checkpoints.json_dumps_finite(record)

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(text, parse_constant=refuse) == {
        "loss": None, "best": None, "curve": [1.0, None, 2.0], "nested": {"x": None},
        "flag": True, "name": "a"}


class Variable:
    """What ``assign_arrays`` needs of a Keras variable (no TensorFlow needed)."""

    def __init__(self, shape):
        self.shape, self.value = shape, None

    def assign(self, value):
        self.value = value


def test_assigning_an_array_of_another_shape_names_the_mismatch(tmp_path):
    arrays, _ = checkpoints.load(written(tmp_path))
    variables = {"kernel": Variable((40, 100)), "bias": Variable((100,))}
    checkpoints.assign_arrays("meta", variables, arrays)
    assert variables["bias"].value is arrays["meta/bias"]
    with pytest.raises(CheckpointMismatch, match=r"last.npz: entry 'meta/kernel' has shape "
                                                 r"\(40, 100\) but the run's config makes it "
                                                 r"\(10, 100\)"):
        checkpoints.assign_arrays("meta", {"kernel": Variable((10, 100))}, arrays)


# ------------------------------------------------------------------ run directories

def test_the_record_leaves_out_what_resume_may_change():
    config = resolve({}, ["strategy/num_periods=3", "training/jit_compile=true"])
    record = runs.checkpoint_record(config)
    assert {"strategy", "evaluation", "directory"}.isdisjoint(record)
    assert {"jit_compile", "stop_on_nonfinite"}.isdisjoint(record["training"])
    assert record["network"] == config["network"] and "jit_compile" in config["training"]
    info = {"config": record}
    runs.check_checkpoint("last.npz", info, resolve({}, ["strategy/num_periods=9",
                                                          "evaluation/steps=5"]))
    with pytest.raises(CheckpointMismatch) as raised:
        runs.check_checkpoint("run/checkpoints/last.npz", info,
                              resolve({}, ["network/layers=[10]"]), "run/config.json")
    assert str(raised.value) == (
        "run/checkpoints/last.npz was written with network/layers=[20, 20] but run/config.json "
        "has [10]: restore run/config.json or start a new run")
    with pytest.raises(CheckpointMismatch, match="problems/0/kwargs/batch_size=128 but"):
        runs.check_checkpoint("last.npz", info,
                              resolve({}, ["problems/0/kwargs/batch_size=16"]))


def test_keys_only_one_side_has_and_checkpoints_without_a_record_pass():
    config = resolve({})
    record = runs.checkpoint_record(config)
    del record["training"]["seed"]  # as if written before the key existed
    runs.check_checkpoint("last.npz", {"config": record}, config)
    runs.check_checkpoint("last.npz", {}, resolve({}, ["network/layers=[10]"]))
    two_problems = resolve({"problems": [config["problems"][0]] * 2})
    with pytest.raises(CheckpointMismatch, match="was written with problems="):
        runs.check_checkpoint("last.npz", {"config": runs.checkpoint_record(two_problems)},
                              config)


def touch_checkpoints(directory, *names):
    folder = directory / "checkpoints"
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.npz").write_bytes(b"")
    return directory


def test_checkpoint_names_are_checked_and_listed(tmp_path):
    run = touch_checkpoints(tmp_path / "run", "best", "last", "previous", "period_0000",
                            "period_0001")
    assert runs.checkpoint_path(run, "period_0001").endswith("period_0001.npz")
    for name in ("worst", "previous", "../run/checkpoints/last", "period_0007"):
        with pytest.raises(CheckpointError) as raised:
            runs.checkpoint_path(run, name)
        assert str(raised.value) == (f"{run}: no checkpoint '{name}'; choose from best, last, "
                                     f"period_0000, period_0001")
    many = touch_checkpoints(tmp_path / "many", "last", *(f"period_{i:04d}" for i in range(40)))
    with pytest.raises(CheckpointError) as raised:
        runs.checkpoint_path(many, "best")
    assert str(raised.value) == (
        f"{many}: no checkpoint 'best' (no period had a finite validation meta-loss); "
        f"choose from last, period_0000 ... period_0039")


def test_a_run_where_no_period_finished(tmp_path):
    for run in (tmp_path, touch_checkpoints(tmp_path / "killed", "last.npz.tmp")):
        with pytest.raises(CheckpointError, match="no 'worst' checkpoint yet "
                                                  r"\(no period has finished\)"):
            runs.checkpoint_path(run, "worst")


@pytest.mark.parametrize("text, expected", [
    ("{", "config.json: not valid JSON"), ("[1]", "config.json: a config must be a mapping")])
def test_a_damaged_config_json(tmp_path, text, expected):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=expected):
        runs.read_config(tmp_path)


@pytest.mark.parametrize("value", [".nan", ".inf", "-1"])
def test_epsilon_must_be_finite_and_non_negative(value):
    with pytest.raises(ConfigError, match="loss_args/epsilon: must be finite and non-negative"):
        resolve({}, [f"loss_args/epsilon={value}"])


def test_stopping_on_non_finite_training_is_the_default():
    assert resolve({})["training"]["stop_on_nonfinite"] is True
    assert resolve({}, ["training/stop_on_nonfinite=false"])["training"][
        "stop_on_nonfinite"] is False

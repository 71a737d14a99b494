"""One writer per run directory: a second one is refused naming the process that holds the
lock; a lock left by a killed process blocks nothing; an unusable directory is one line."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config
from test_cli import IMPORTS

from l2o import cli, locks
from l2o.locks import RunLock, RunLocked
from l2o.validation import ConfigError

# A process that takes the lock of argv[1] and keeps it until it is killed.
HOLDER = ("import sys, time\n"
          "from l2o.locks import RunLock\n"
          "RunLock(sys.argv[1]).acquire()\n"
          "print('held', flush=True)\n"
          "time.sleep(300)\n")


@pytest.fixture
def holder():
    """``hold(directory)`` starts a process holding ``directory``'s lock; returns it."""
    started = []

    def hold(directory):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], cwd=ROOT,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def refused(directory):
    with pytest.raises(RunLocked) as raised:
        RunLock(directory).acquire()
    return str(raised.value)


def test_a_second_writer_is_refused_naming_the_process_that_holds_the_lock(tmp_path, holder):
    run = tmp_path / "run"
    process = holder(run)
    assert refused(run) == (f"{run}: process {process.pid} is writing this run (it holds "
                            f"{run}/lock); wait for it to end or stop it, then run again")


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, holder):
    run = tmp_path / "run"
    process = holder(run)
    with pytest.raises(RunLocked, match=f"process {process.pid} is writing"):
        RunLock(run).check()  # a look, taking nothing
    process.send_signal(signal.SIGKILL)
    process.wait()
    RunLock(run).check()
    assert (run / "lock").read_text().split()[0] == str(process.pid)  # left behind
    with RunLock(run):
        assert (run / "lock").read_text().split()[0] == str(os.getpid())
    assert not (run / "lock").exists()
    assert run.is_dir()  # it existed before this lock: kept


def test_without_flock_the_lock_counts_while_its_process_lives(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "fcntl", None)  # as on Windows
    run = tmp_path / "run"
    run.mkdir()
    parent = os.getppid()  # a live process that is not this one
    (run / "lock").write_text(f"{parent} {socket.gethostname()}\n")
    assert f"process {parent} is writing this run" in refused(run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not locks.alive(dead.pid)
    (run / "lock").write_text(f"{dead.pid} {socket.gethostname()}\n")
    with RunLock(run):
        assert f"process {os.getpid()} is writing" in refused(run)
    assert not (run / "lock").exists()


def test_a_lock_that_made_the_directory_removes_it_if_nothing_was_written(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    with RunLock(run):
        assert run.is_dir()
    assert not (tmp_path / "a").exists()
    with RunLock(run):
        (run / "config.json").write_text("{}")
    assert sorted(os.listdir(run)) == ["config.json"]


def test_a_directory_that_cannot_be_made_names_the_key():
    with pytest.raises(ConfigError) as raised:
        RunLock("/proc/x", "directory").acquire()
    assert str(raised.value) == ("directory: /proc/x: cannot create the run directory (No such "
                                 "file or directory); choose a writable folder")


def test_a_directory_that_cannot_be_written_names_the_key(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):  # as in a folder of another user's, read-only
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ConfigError) as raised:
        RunLock(tmp_path, "directory").acquire()
    assert str(raised.value) == (f"directory: {tmp_path}: cannot write its lock file "
                                 f"(Permission denied); choose a writable folder")


def write_run(tmp_path):
    """A config file whose directory holds a run's config.json (nothing trained)."""
    config = tiny_config(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path), tmp_path / "run"


@pytest.mark.parametrize("command", ["resume", "train"])
def test_train_and_resume_refuse_a_run_another_process_writes(tmp_path, holder, capfd,
                                                              command):
    config, run = write_run(tmp_path)
    process = holder(run)
    before = sorted(os.listdir(run))
    with pytest.raises(SystemExit) as raised:
        if command == "resume":
            cli.resume([str(run)])
        else:
            cli.train([config, "--overwrite"])
    assert raised.value.code == 2
    err = capfd.readouterr().err
    assert err == (f"error: {run}: process {process.pid} is writing this run (it holds "
                   f"{run}/lock); wait for it to end or stop it, then run again\n")
    assert sorted(os.listdir(run)) == before  # --overwrite deleted nothing


def test_train_in_a_directory_that_cannot_be_made_is_one_line(tmp_path, capfd):
    config, _ = write_run(tmp_path)
    with pytest.raises(SystemExit) as raised:
        cli.train([config, "directory=/proc/x"])
    assert raised.value.code == 2
    assert capfd.readouterr().err == ("error: directory: /proc/x: cannot create the run "
                                      "directory (No such file or directory); choose a "
                                      "writable folder\n")


def test_resume_is_refused_before_keras_is_imported(tmp_path, holder):
    _, run = write_run(tmp_path)
    process = holder(run)
    result = subprocess.run([sys.executable, "-c", IMPORTS, "resume", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout == "2 False False\n"  # exit 2; neither Keras nor TensorFlow imported
    assert result.stderr == (f"error: {run}: process {process.pid} is writing this run (it "
                             f"holds {run}/lock); wait for it to end or stop it, then run "
                             f"again\n")

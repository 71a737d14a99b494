"""Run directories: resume falls back over a damaged last.npz and refuses checkpoints of
another config; non-finite training stops; a kill leaves no step logged twice.

One uninterrupted 3-period run (module fixture) is what every resumed copy must equal:
its checkpoints array for array and its summary line for line.
"""

import contextlib
import glob
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from conftest import tiny_config
from test_checkpoints import drop_entry, overwrite_200_bytes
from test_cli import assert_one_clear_error, run_command, write_config

import l2o
from l2o import checkpoints, cli
from l2o.backend.summaries import read_scalars
from l2o.checkpoints import CheckpointError, CheckpointMismatch
from l2o.config import resolve
from l2o.strategies import STRATEGIES
from l2o.strategies.base import NonFiniteTraining
from l2o.trainer import MetaTrainer

PERIODS = 3
# Persistent: last.npz holds inner trajectories too, which the trainer reads back itself.
TRAINING = ("training/persistent=true",)
NON_FINITE = "problems/0/kwargs/loss_scale=3e38"  # every inner loss overflows float32


def train(directory, overrides=()):
    resolved = resolve(tiny_config(directory), [*TRAINING, *overrides])
    STRATEGIES[resolved["strategy_constructor"]](**resolved["strategy"]).run(
        MetaTrainer(resolved), resolved["directory"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    directory = tmp_path_factory.mktemp("straight") / "run"
    train(directory, [f"strategy/num_periods={PERIODS}"])
    return directory


def copy_of(straight, tmp_path):
    return shutil.copytree(straight, tmp_path / "run")


def summary(run):
    """summary.jsonl without the timings, read as strict JSON (no NaN tokens)."""
    def refuse(token):
        raise AssertionError(f"summary.jsonl holds the non-JSON token {token}")

    return [{key: value for key, value in json.loads(line, parse_constant=refuse).items()
             if key != "inner_steps_per_second"}
            for line in (run / "summary.jsonl").read_text().splitlines()]


def assert_same_run(run, straight):
    names = sorted(os.listdir(straight / "checkpoints"))
    assert sorted(os.listdir(run / "checkpoints")) == names
    for name in names:
        expected, _ = checkpoints.load(str(straight / "checkpoints" / name))
        actual, _ = checkpoints.load(str(run / "checkpoints" / name))
        assert sorted(actual) == sorted(expected), name
        for key, value in expected.items():
            np.testing.assert_array_equal(actual[key], value, err_msg=f"{name}: {key}")
    assert summary(run) == summary(straight)


def contents(directory):
    """Every file under ``directory`` with its bytes: to show that nothing was written."""
    return {os.path.relpath(path, directory): open(path, "rb").read()
            for path in glob.glob(f"{directory}/**", recursive=True) if os.path.isfile(path)}


def one_error_line(capsys, expected, code=2, call=None):
    """Asserts that ``call`` exits with ``code`` and one stderr line; returns its stdout."""
    with pytest.raises(SystemExit) as raised:
        call()
    assert raised.value.code == code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: {expected}"]
    return out


@contextlib.contextmanager
def warnings_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def tensorboard_steps(run, tag="validation_meta_loss"):
    return sorted(step for (name, step), values in read_scalars(f"{run}/tensorboard").items()
                  if name == tag for _ in values)


# ------------------------------------------------------------------ damaged checkpoints

@pytest.mark.parametrize("damage, problem", [
    (overwrite_200_bytes("meta/lstm_0/kernel"),
     "damaged checkpoint: entry 'meta/lstm_0/kernel' is corrupt"),
    (drop_entry("meta_optimizer/3"), "incomplete checkpoint: no entry 'meta_optimizer/3'"),
    (drop_entry("worker/0_0/params/1"), "incomplete checkpoint: no entry 'params/1'"),
    (os.remove, "no such checkpoint file"),  # killed between the two renames of a save
], ids=["overwritten", "entry-missing", "trajectory-entry-missing", "deleted"])
@pytest.mark.slow
def test_resume_falls_back_to_previous_when_last_is_damaged(straight, tmp_path, capsys,
                                                             damage, problem):
    run = copy_of(straight, tmp_path)
    last = run / "checkpoints" / "last.npz"
    damage(str(last))
    cli.resume([str(run)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [(f"warning: {last}: {problem}; resuming from previous.npz, the state "
                      f"after period {PERIODS - 2}")]  # numbered from 0, as its files are
    # The period after previous.npz is trained again, and previous.npz kept, not replaced
    # by the damaged file: every checkpoint as if nothing had happened.
    assert_same_run(run, straight)


@pytest.mark.slow
def test_resume_with_no_intact_checkpoint_says_so_and_writes_nothing(straight, tmp_path):
    run = copy_of(straight, tmp_path)
    os.remove(run / "checkpoints" / "previous.npz")
    overwrite_200_bytes("meta/lstm_0/kernel")(str(run / "checkpoints" / "last.npz"))
    before = contents(run)
    result = run_command("resume.py", str(run), f"strategy/num_periods={PERIODS + 1}")
    assert_one_clear_error(result, f"{run}/checkpoints: no intact checkpoint to resume from "
                                   f"({run}/checkpoints/last.npz: damaged checkpoint: entry "
                                   f"'meta/lstm_0/kernel' is corrupt; {run}/checkpoints/"
                                   f"previous.npz: no such checkpoint file); start afresh with "
                                   f"train.py --overwrite")
    assert contents(run) == before


def test_evaluating_a_damaged_checkpoint(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    path = run / "checkpoints" / "best.npz"
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    one_error_line(capsys, f"{path}: damaged checkpoint: not an .npz archive (truncated or "
                           f"overwritten?)", call=lambda: cli.evaluate([str(run), "--no-baseline"]))
    assert not (run / "evaluation").exists()


# ------------------------------------------------------------------ checkpoint vs config

def edit_config(run, **network):
    config = json.loads((run / "config.json").read_text())
    config["network"].update(network)
    (run / "config.json").write_text(json.dumps(config))


def test_a_config_edited_after_training_is_named(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    edit_config(run, layers=[10])
    before = contents(run)
    mismatch = (f"was written with network/layers=[20, 20] but {run}/config.json has [10]: "
                f"restore {run}/config.json or start a new run")
    one_error_line(capsys, f"{run}/checkpoints/last.npz {mismatch}",
                   call=lambda: cli.resume([str(run), f"strategy/num_periods={PERIODS + 1}"]))
    one_error_line(capsys, f"{run}/checkpoints/best.npz {mismatch}",
                   call=lambda: cli.evaluate([str(run), "--no-baseline"]))
    with pytest.raises(CheckpointMismatch) as raised:
        l2o.load_optimizer(str(run), checkpoint="period_0001")
    assert str(raised.value) == f"{run}/checkpoints/period_0001.npz {mismatch}"
    assert contents(run) == before


def test_a_checkpoint_without_a_record_is_checked_by_its_shapes(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    last = str(run / "checkpoints" / "last.npz")
    arrays, info = checkpoints.load(last)
    del info["config"]  # as written before checkpoints recorded their config
    checkpoints.save(last, arrays, info)
    edit_config(run, layers=[10])
    before = contents(run)
    one_error_line(capsys, f"{last}: entry 'meta/lstm_0/kernel' has shape (2, 80) but the "
                           f"run's config makes it (2, 40): restore config.json or start a "
                           f"new run", call=lambda: cli.resume([str(run)]))
    assert contents(run) == before


def test_a_checkpoint_missing_a_meta_weight_is_named(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    best = run / "checkpoints" / "best.npz"
    drop_entry("meta/lstm_0/kernel")(str(best))
    one_error_line(capsys, f"{best}: incomplete checkpoint: no entry 'meta/lstm_0/kernel'; "
                           f"restore the file or choose another checkpoint",
                   call=lambda: cli.evaluate([str(run), "--no-baseline"]))


def test_resuming_a_finished_run_says_how_to_extend_it(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    cli.resume([str(run)])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{run} had already finished; to extend it: resume.py {run} "
        f"strategy/num_periods={2 * PERIODS}")
    assert_same_run(run, straight)
    assert not (run / "lock").exists()  # let go of at the end


def test_unknown_checkpoint_names_list_the_valid_ones(straight, capsys):
    valid = "choose from best, last, period_0000, period_0001, period_0002"
    with pytest.raises(CheckpointError) as raised:
        l2o.load_optimizer(str(straight), checkpoint="worst")
    assert str(raised.value) == f"{straight}: no checkpoint 'worst'; {valid}"
    one_error_line(capsys, f"{straight}: no checkpoint 'period_0003'; {valid}",
                   call=lambda: cli.evaluate([str(straight), "--checkpoint", "period_0003"]))


def test_train_refuses_checkpoints_without_their_config(straight, tmp_path, capsys):
    run = copy_of(straight, tmp_path)
    os.remove(run / "config.json")
    before = contents(run)
    config = write_config(tmp_path)
    one_error_line(capsys, f"{run} holds checkpoints but no config.json: set directory=..., or "
                           f"pass --overwrite to start afresh there",
                   call=lambda: cli.train([config, f"directory={run}"]))
    one_error_line(capsys, f"{run}: has checkpoints but no config.json; restore it, or start "
                           f"afresh with train.py --overwrite", call=lambda: cli.resume([str(run)]))
    assert contents(run) == before


# ------------------------------------------------------------------ logs after a kill

def test_a_kill_before_last_npz_logs_no_period_twice(straight, tmp_path):
    """The files a kill leaves between the summary line and last.npz of the last period."""
    run = copy_of(straight, tmp_path)
    folder = run / "checkpoints"
    os.replace(folder / "previous.npz", folder / "last.npz")  # last.npz one period behind
    assert tensorboard_steps(run) == list(range(PERIODS))  # the period's step is logged
    cli.resume([str(run)])
    assert tensorboard_steps(run) == list(range(PERIODS))
    assert tensorboard_steps(run, "train_meta_loss") == list(range(PERIODS))
    assert_same_run(run, straight)


# ------------------------------------------------------------------ non-finite training

@pytest.mark.slow
def test_non_finite_training_stops_with_one_line(tmp_path):
    run = tmp_path / "run"
    result = run_command("train.py", write_config(tmp_path), NON_FINITE)
    assert_one_clear_error(result, "error: period 0: no meta-update was finite (all 4 "
                                   "truncations skipped); check the config's scales and "
                                   "learning rates (training/stop_on_nonfinite=false goes on "
                                   "regardless)")
    assert not (run / "checkpoints").exists() and not (run / "summary.jsonl").exists()
    assert "done" not in result.stdout


@pytest.mark.slow
def test_non_finite_training_can_go_on_and_writes_standard_json(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteTraining, match="period 0: no meta-update was finite"):
        train(run, [NON_FINITE])
    train(run, [NON_FINITE, "training/stop_on_nonfinite=false"])
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: period {i}: no meta-update was finite (all 4 truncations "
                        f"skipped)" for i in (0, 1)] + [
        (f"warning: {run}: no period had a finite validation meta-loss, so the run has no best "
         f"checkpoint (its periods are in checkpoints/)")]
    assert [line["validation_meta_loss"] for line in summary(run)] == [None, None]
    one_error_line(capsys, f"{run}: no checkpoint 'best' (no period had a finite validation "
                           f"meta-loss); choose from last, period_0000, period_0001",
                   call=lambda: cli.evaluate([str(run), "--no-baseline"]))
    # The console counts periods as summary.jsonl and period_NNNN.npz do: from 0.
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("period ")] == \
        [f"period {line['period']}" for line in summary(run)] == ["period 0", "period 1"]
    # Evaluated, the run diverges: said in one line (exit 3), no numpy warning, no "inf ± nan".
    with warnings_as_errors():
        out = one_error_line(capsys, f"learned_last diverged (a non-finite final training loss) on "
                               f"problem 0 in 2 of 2 runs; its results are in {run}/evaluation; "
                               f"try another checkpoint (--checkpoint best, or period_NNNN)",
                       code=3, call=lambda: cli.evaluate([str(run), "--checkpoint", "last",
                                                          "--no-baseline"]))
    evaluated = json.loads((run / "evaluation" / "learned_last.json").read_text(),
                           parse_constant=lambda token: pytest.fail(f"JSON token {token}"))
    assert evaluated["problems"][0]["final_train_loss_mean"] is None
    assert evaluated["problems"][0]["diverged_runs"] == 2
    assert out.splitlines()[0] == ("learned_last problem 0: diverged in 2 of 2 runs, validation "
                                   f"accuracy {evaluated['problems'][0]['final_validation_accuracy_mean']:.3f}")

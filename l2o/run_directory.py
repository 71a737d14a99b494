"""A meta-training run's directory as the trainer writes it: resume, logs and checkpoint order.

A run directory holds
    config.json              the resolved config (resume.py reads it back)
    checkpoints/last.npz     everything needed to resume after the last period
    checkpoints/previous.npz the same after the period before: resume falls back
                             to it when last.npz is damaged (one more file of
                             last.npz's size, where full state in every period
                             file would multiply the disk a run takes)
    checkpoints/best.npz     meta-weights of the best validation so far
    checkpoints/period_NNNN.npz   meta-weights after each period
    summary.jsonl            one JSON line per period (null for a non-finite number)
    tensorboard/             the same scalars for TensorBoard
    lock                     while a process trains there: its id (``l2o.locks``)
Every checkpoint records the config it must match (``runs.checkpoint_record``).
``l2o.runs`` reads a finished run back; ``RunDirectory`` is the writer's side,
which a strategy drives without knowing the files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys

from l2o import backend, checkpoints, runs


class RunDirectory:
    """The files of the run of ``config`` in ``path`` (see the module docstring).

    ``resume`` restores the newest intact full state, ``open_logs`` forgets the
    logs of periods that a kill cut short, and ``record_period`` writes a
    finished period's files in the order that keeps them consistent after a kill
    at any point.
    """

    def __init__(self, path: str | os.PathLike, config: dict):
        self.path, self.config = os.fspath(path), config
        self.checkpoints = os.path.join(self.path, "checkpoints")
        # Whether the next full checkpoint may keep last.npz as previous.npz: not after a
        # fall-back, which would replace the intact previous state by the damaged file.
        self._rotate_last = True
        self.log = None

    def checkpoint(self, name: str) -> str:
        return os.path.join(self.checkpoints, f"{name}.npz")

    def resume(self, load_trainer_state) -> dict | None:
        """The strategy state of the newest intact full checkpoint, last.npz else previous.npz
        (saying so), after ``load_trainer_state(arrays, info)`` has restored the trainer from
        it; None where the run has no checkpoint yet.
        """
        paths = [self.checkpoint("last"), self.checkpoint("previous")]
        if not any(os.path.exists(path) for path in paths):
            return None
        problems = []
        for path in paths:
            try:
                state = self._load(path, load_trainer_state)
            except checkpoints.CheckpointError as error:
                problems.append(str(error))
                continue
            if problems:
                print(f"warning: {problems[0]}; resuming from {os.path.basename(path)}, the "
                      f"state after period {state['period']}", file=sys.stderr)
            self._rotate_last = not problems
            return state
        raise checkpoints.CheckpointError(
            f"{self.checkpoints}: no intact checkpoint to resume from ({'; '.join(problems)}); "
            f"start afresh with train.py --overwrite")

    def _load(self, path, load_trainer_state):
        arrays, info = checkpoints.load(path)
        runs.check_checkpoint(path, info, self.config, os.path.join(self.path, "config.json"))
        try:
            load_trainer_state(arrays, info["trainer"])
        except KeyError as error:  # an entry looked up in a mapping the trainer built itself
            raise checkpoints.CheckpointError(
                f"{path}: incomplete checkpoint: no entry {error}") from None
        state = info["strategy"]
        # Looked up by name: an incomplete file raises CheckpointError here, and resume falls back.
        return dict(state, period=state["period"], best_validation=state["best_validation"])

    def save_config(self):
        runs.save_config(self.config, self.path)

    def open_logs(self, period: int):
        """Opens the logs, forgetting those of periods after ``period`` (cut short by a kill).

        Their summary lines go; TensorBoard, which cannot forget a step, is then
        rewritten from the lines that stay, so no step is logged twice.
        """
        path = os.path.join(self.path, "summary.jsonl")
        logdir = os.path.join(self.path, "tensorboard")
        lines, kept, records = [], [], []
        if os.path.exists(path):
            with open(path) as handle:
                lines = [line for line in handle if line.strip()]
        for line in lines:
            try:
                record = json.loads(line)
                finished = record["period"] <= period
            except (ValueError, KeyError, TypeError):  # a line torn by a kill
                continue
            if finished:
                kept.append(line)
                records.append(record)
        rewrite = len(kept) < len(lines)
        if rewrite:
            checkpoints.write_text(path, "".join(kept))
            shutil.rmtree(logdir, ignore_errors=True)
        self.log = backend.ScalarLog(logdir)
        for record in records if rewrite else ():
            self.log.write(record["period"], _scalars(record))

    def record_period(self, period: int, meta_weights: dict, metrics: dict, improved: bool,
                      strategy_state: dict, trainer_state):
        """Writes a finished period: its meta-weights (and best.npz if ``improved``), its
        summary line and scalars, then the full state (``trainer_state()``: the trainer's
        arrays and info) as last.npz."""
        weights = {f"meta/{k}": v for k, v in meta_weights.items()}
        meta_info = {"period": period, **metrics, "config": runs.checkpoint_record(self.config)}
        checkpoints.save(self.checkpoint(f"period_{period:04d}"), weights, meta_info)
        if improved:
            checkpoints.save(self.checkpoint("best"), weights, meta_info)
        # Logs first: a kill before last.npz lands makes resume redo this period and
        # drop its logs, while the reverse order would lose the summary line.
        record = {"period": period, **metrics, "best": improved}
        checkpoints.append_line(os.path.join(self.path, "summary.jsonl"),
                                checkpoints.json_dumps_finite(record))
        self.log.write(period, _scalars(record))
        arrays, trainer_info = trainer_state()
        checkpoints.save(self.checkpoint("last"), arrays,
                         {"strategy": strategy_state, "trainer": trainer_info, **meta_info},
                         previous=self.checkpoint("previous") if self._rotate_last else None)
        self._rotate_last = True

    def best_meta_weights(self) -> dict:
        """{name: array} of best.npz."""
        arrays, _ = checkpoints.load(self.checkpoint("best"))
        return checkpoints.prefixed(arrays, "meta")


def _scalars(record):
    """The TensorBoard scalars of a summary record: its finite numbers but the period."""
    return {key: value for key, value in record.items()
            if key != "period" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}

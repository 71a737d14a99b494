"""Reading a run directory back: its config and its meta-trained optimiser.

Every checkpoint records the part of the config it was written for
(``checkpoint_record``); reading one back with a config that differs there is
refused with one line naming the key, so an edited ``config.json`` cannot
silently meet weights of another shape or meaning.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import TYPE_CHECKING

from l2o import checkpoints, pretrained
from l2o.checkpoints import CheckpointError, CheckpointMismatch
from l2o.config_files import move_flat_estimator_keys
from l2o.registry import OPTIMIZERS
from l2o.validation import ConfigError, first_line, shown

if TYPE_CHECKING:  # keras (and TensorFlow) load on the first load_optimizer, not on import
    import keras

# What may change between the checkpoints of one run (resume.py takes overrides of
# these): the schedule ahead, evaluation, compilation, what to do about non-finite
# training and where particles run (distributed workers). Everything else (network,
# problems, seed, ...) must match the checkpoint.
RESUMABLE = ("strategy", "evaluation", "training/jit_compile", "training/stop_on_nonfinite",
             "distributed")
CHECKPOINT_NAME = re.compile(r"best|last|period_\d{4,}")


def read_config(directory: str | os.PathLike) -> dict:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        if os.path.isdir(os.path.join(directory, "checkpoints")):
            raise ConfigError(f"{directory}: has checkpoints but no config.json; restore it, "
                              f"or start afresh with train.py --overwrite")
        raise ConfigError(f"{directory}: not a run directory (no config.json); "
                          f"start one with train.py")
    with open(path) as handle:
        try:
            config = json.load(handle)
        except ValueError as error:
            raise ConfigError(f"{path}: not valid JSON ({first_line(error)}); restore it or "
                              f"start a new run") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return config


def save_config(config, directory):
    """Writes the resolved ``config`` as ``<directory>/config.json`` (what resume reads)."""
    checkpoints.write_text(os.path.join(directory, "config.json"), json.dumps(config, indent=2))


def checkpoint_record(config):
    """The part of ``config`` a checkpoint must match: all but ``RESUMABLE`` and the directory."""
    record = copy.deepcopy(config)
    record.pop("directory", None)
    for name in RESUMABLE:
        *sections, key = name.split("/")
        node = record
        for section in sections:
            node = node.get(section, {})
        node.pop(key, None)
    return record


def check_checkpoint(path, info, config, source="config.json"):
    """Raises CheckpointMismatch if the checkpoint at ``path`` was written for another config.

    Keys that only one side has are defaults added or retired since, not
    choices, and pass. Checkpoints older than the record pass too; their
    arrays' shapes are still checked when a run resumes from them.
    """
    if "config" not in info:
        return
    written = copy.deepcopy(info["config"])
    move_flat_estimator_keys(written)  # a checkpoint written before the estimator section
    difference = _first_difference(written, checkpoint_record(config))
    if difference:
        name, written, now = difference
        raise CheckpointMismatch(
            f"{path} was written with {name}={_show(written)} but {source} has {_show(now)}: "
            f"restore {source} or start a new run")


def _first_difference(written, now, name=""):
    """``(key, written value, current value)`` of the first difference, or None."""
    if isinstance(written, dict) and isinstance(now, dict):
        for key in written:
            if key in now:
                found = _first_difference(written[key], now[key], f"{name}{key}/")
                if found:
                    return found
        return None
    if isinstance(written, list) and isinstance(now, list) and len(written) == len(now) \
            and all(isinstance(item, dict) for item in written + now):
        for index, (a, b) in enumerate(zip(written, now)):
            found = _first_difference(a, b, f"{name}{index}/")
            if found:
                return found
        return None
    return None if written == now else (name.rstrip("/"), written, now)


def _show(value):
    return json.dumps(value)


def checkpoint_names(directory: str | os.PathLike) -> list[str]:
    """The checkpoints a run offers: best, last and period_NNNN, those that exist."""
    folder = os.path.join(directory, "checkpoints")
    names = [name[:-4] for name in (os.listdir(folder) if os.path.isdir(folder) else [])
             if name.endswith(".npz") and CHECKPOINT_NAME.fullmatch(name[:-4])]
    return sorted(names, key=lambda name: (name.startswith("period_"), name))


def checkpoint_path(directory: str | os.PathLike, checkpoint: str = "best") -> str:
    """The file of ``checkpoint``; CheckpointError listing the run's names if it has none."""
    path = os.path.join(directory, "checkpoints", f"{checkpoint}.npz")
    if CHECKPOINT_NAME.fullmatch(str(checkpoint)) and os.path.isfile(path):
        return path
    names = checkpoint_names(directory)
    if not names:
        raise CheckpointError(f"{directory}: no '{checkpoint}' checkpoint yet "
                              f"(no period has finished)")
    # best.npz is written by the first period with a finite validation meta-loss.
    why = " (no period had a finite validation meta-loss)" if checkpoint == "best" else ""
    periods = [name for name in names if name.startswith("period_")]
    if len(periods) > 3:  # a long run: its first and last period stand for the rest
        names = [name for name in names if name not in periods[1:]]
        names[names.index(periods[0])] = f"{periods[0]} ... {periods[-1]}"
    raise CheckpointError(f"{directory}: no checkpoint '{checkpoint}'{why}; "
                          f"choose from {', '.join(names)}")


def load_meta_weights(directory: str | os.PathLike,
                      checkpoint: str = "best") -> tuple[dict, dict]:
    """``(meta-weights, info)`` of a checkpoint, checked against the run's config.json."""
    path = checkpoint_path(directory, checkpoint)
    arrays, info = checkpoints.load(path)
    check_checkpoint(path, info, read_config(directory),
                     os.path.join(directory, "config.json"))
    return checkpoints.prefixed(arrays, "meta"), info


def load_optimizer(directory: str | os.PathLike, checkpoint: str = "best",
                   **kwargs) -> keras.optimizers.Optimizer:
    """The Keras optimiser meta-trained in ``directory``, or a shipped one (``pretrained:NAME``;
    ``pretrained`` alone: the recommended one, ``l2o.pretrained.RECOMMENDED``).

    ``checkpoint`` is ``best`` (lowest validation meta-loss), ``last``, or
    ``period_NNNN``; ``kwargs`` go to the optimiser (``learning_rate``, ...);
    ``run_seed`` seeds a stochastic optimiser's noise for one run.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise ConfigError(f"load_optimizer: expected a run directory or "
                          f"'{pretrained.PREFIX}NAME' (shipped: "
                          f"{', '.join(pretrained.names()) or 'none'}), got {shown(directory)}")
    import l2o.optimizers  # noqa: F401  (registers the constructors; heavy, so on first use)

    directory = os.fspath(directory)
    if directory in (pretrained.PREFIX, pretrained.PREFIX[:-1]):
        return pretrained.load(pretrained.RECOMMENDED, **kwargs)
    if directory.startswith(pretrained.PREFIX):
        return pretrained.load(directory[len(pretrained.PREFIX):], **kwargs)
    config = read_config(directory)
    meta_weights, _ = load_meta_weights(directory, checkpoint)
    return OPTIMIZERS.lookup("constructor", config["constructor"]).from_run(
        config, meta_weights, **kwargs)

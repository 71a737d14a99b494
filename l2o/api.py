"""Training from Python: what ``train.py`` and ``resume.py`` do, as functions.

``train(config)`` takes what ``train.py`` takes (a config file, or a shipped
config's name) or a mapping; in a mapping, Python callables and classes may
stand where the l2o toolkit's API took them (``unroll_distribution``,
``annealing_schedule``, a curriculum ``schedule``, ``unroll_weights``, a
problem's ``target``, ``constructor``, ``strategy_constructor``): the run's
``config.json`` records their import names (``l2o.import_names``), so
``resume(directory)`` rebuilds them, or refuses in one line saying why (a
lambda). Both check the whole config before any work and raise ConfigError
naming the key.

    import l2o
    l2o.train({"problems": [...], "strategy": {"annealing_schedule": my_schedule}})
    l2o.resume("runs/dm", ["strategy/num_periods=20"])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from l2o import locks, runs
from l2o.validation import ConfigError

# The overrides resume takes: a section's keys, or one key (runs.RESUMABLE says why).
RESUMABLE = tuple(name + ("=" if "/" in name else "/") for name in runs.RESUMABLE)


def resolve(config: Mapping | str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """The resolved config of ``config``: a mapping, a config file or a shipped config's name."""
    from l2o import catalog
    from l2o import config as config_module

    if isinstance(config, (str, os.PathLike)):
        config = config_module.load_file(catalog.config_path(os.fspath(config)))
    return config_module.resolve(config, overrides)


def train(config: Mapping | str | os.PathLike, overrides: Sequence[str] = (),
          overwrite: bool = False) -> dict:
    """Meta-trains ``config`` (see ``resolve``) in its ``directory``; returns the run's state.

    A directory that holds a run is refused unless ``overwrite``, which deletes it first;
    so is one that another process is writing (``locks.RunLocked``, naming it).
    """
    from l2o.trainer import MetaTrainer

    resolved = resolve(config, overrides)
    with locks.RunLock(resolved["directory"], "directory"):
        trainer = MetaTrainer(resolved)  # builds the problems: data errors surface here
        _clear(resolved["directory"], overwrite)
        return run(trainer, resolved["directory"])


def resume(directory: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Continues the run in ``directory`` after its last finished period; returns its state.

    ``overrides`` may change only what ``runs.RESUMABLE`` names (e.g.
    ``strategy/num_periods=20`` to extend the run). A directory that another process
    is writing is refused (``locks.RunLocked``, naming it).
    """
    from l2o.trainer import MetaTrainer

    for override in overrides:
        if not override.startswith(RESUMABLE):
            raise ConfigError(f"{override.split('=')[0]}: cannot change on resume (only "
                              f"{', '.join(k.rstrip('=') for k in RESUMABLE)}); start a new run")
    resolved = resolve(runs.read_config(directory), overrides)
    resolved["directory"] = directory
    with locks.RunLock(directory):
        return run(MetaTrainer(resolved), directory)


def run(trainer, directory):
    """Runs the config's strategy for ``trainer`` in ``directory``; returns its final state."""
    from l2o.strategies import STRATEGIES

    config = trainer.config
    try:
        return STRATEGIES[config["strategy_constructor"]](**config["strategy"]).run(trainer,
                                                                                  directory)
    finally:
        trainer.close()  # distributed workers, if any


def _clear(directory, overwrite):
    """Refuses a directory that holds a run, or with ``overwrite`` deletes it."""
    holds_config = os.path.exists(os.path.join(directory, "config.json"))
    # Checkpoints without their config.json are a run too: training there would resume them.
    holds_run = holds_config or os.path.exists(os.path.join(directory, "checkpoints"))
    if not holds_run:
        return
    if not overwrite:
        raise ConfigError(f"{directory} already holds a run: continue it with resume.py, "
                          f"set directory=..., or pass --overwrite" if holds_config else
                          f"{directory} holds checkpoints but no config.json: set "
                          f"directory=..., or pass --overwrite to start afresh there")
    if os.path.abspath(directory) in (os.getcwd(), os.path.abspath(os.sep)):
        raise ConfigError(f"--overwrite would delete {directory}; choose a run directory")
    import shutil

    for entry in os.listdir(directory):  # all but the lock this process holds
        path = os.path.join(directory, entry)
        if entry == locks.NAME:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)

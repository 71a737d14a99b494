"""Reading a run directory back: its config and its meta-trained optimiser."""

import json
import os

from l2o import checkpoints
from l2o.registry import OPTIMIZERS
from l2o.validation import ConfigError


def read_config(directory):
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{directory}: not a run directory (no config.json); "
                          f"start one with train.py")
    with open(path) as handle:
        return json.load(handle)


def save_config(config, directory):
    """Writes the resolved ``config`` as ``<directory>/config.json`` (what resume reads)."""
    checkpoints.write_text(os.path.join(directory, "config.json"), json.dumps(config, indent=2))


def checkpoint_path(directory, checkpoint="best"):
    path = os.path.join(directory, "checkpoints", f"{checkpoint}.npz")
    if not os.path.isfile(path):
        raise ConfigError(f"{directory}: no '{checkpoint}' checkpoint yet "
                          f"(no period has finished)")
    return path


def load_meta_weights(directory, checkpoint="best"):
    arrays, info = checkpoints.load(checkpoint_path(directory, checkpoint))
    return checkpoints.prefixed(arrays, "meta"), info


def load_optimizer(directory, checkpoint="best", **kwargs):
    """The Keras optimiser meta-trained in ``directory``.

    ``checkpoint`` is ``best`` (lowest validation meta-loss), ``last``, or
    ``period_NNNN``; ``kwargs`` go to the optimiser (``learning_rate``, ...);
    ``run_seed`` seeds a stochastic optimiser's noise for one run.
    """
    import l2o.optimizers  # noqa: F401  (registers the constructors; heavy, so on first use)

    config = read_config(directory)
    meta_weights, _ = load_meta_weights(directory, checkpoint)
    return OPTIMIZERS.lookup("constructor", config["constructor"]).from_run(
        config, meta_weights, **kwargs)

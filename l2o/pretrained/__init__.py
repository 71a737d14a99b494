"""Meta-trained optimisers shipped inside the package: use them without meta-training.

    import l2o
    print(l2o.pretrained.names())
    model.compile(optimizer=l2o.load_optimizer("pretrained"), loss=...)  # the recommended one
    model.compile(optimizer=l2o.load_optimizer("pretrained:normalized_mlp_family"), loss=...)

Each entry is ``<name>.npz`` (the meta-weights) beside ``<name>.json``: the
constructor and ``network`` it was built with, a one-line description, the
recipe (a shipped config) and the command that reproduces it, and where the
weights came from (the run and its checkpoint). ``python -m l2o.pretrained
export RUN NAME`` writes a run's best checkpoint as such an entry (see
``l2o/pretrained/__main__.py``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

from l2o.registry import OPTIMIZERS
from l2o.validation import ConfigError

if TYPE_CHECKING:  # keras (and TensorFlow) load on the first load, not on import
    import keras

FOLDER = os.path.dirname(os.path.abspath(__file__))
PREFIX = "pretrained:"
# What ``load_optimizer("pretrained")`` loads: the one the README recommends.
RECOMMENDED = "controlled_adam_decay"


def names() -> list[str]:
    """The shipped pretrained optimisers, sorted."""
    return sorted(entry[:-5] for entry in os.listdir(FOLDER) if entry.endswith(".json"))


def describe(name: str) -> dict:
    """The JSON record of ``name``: constructor, network, description, recipe, provenance."""
    path = os.path.join(FOLDER, f"{name}.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{PREFIX}{name}: no such pretrained optimiser (shipped: "
                          f"{', '.join(names()) or 'none'})")
    with open(path) as handle:
        return json.load(handle)


def load(name: str, **kwargs) -> keras.optimizers.Optimizer:
    """The Keras optimiser ``name`` describes; ``kwargs`` go to its constructor."""
    import l2o.optimizers  # noqa: F401  (registers the constructors; heavy, so on first use)

    record = describe(name)
    with np.load(os.path.join(FOLDER, f"{name}.npz")) as data:
        meta_weights = {key: data[key] for key in data.files}
    return OPTIMIZERS.lookup("constructor", record["constructor"]).from_run(
        {"network": record["network"]}, meta_weights, **kwargs)

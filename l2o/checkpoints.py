"""Checkpoint files: named numpy arrays plus JSON metadata, written atomically.

A write goes to a temporary file that is then renamed over the target, so a
run killed mid-write leaves the previous checkpoint intact.
"""

import json
import os

import numpy as np


def save(path, arrays, info):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = path + ".tmp.npz"
    np.savez(temporary, __info__=np.array(json.dumps(info)), **arrays)
    os.replace(temporary, path)


def write_text(path, text):
    """Replaces ``path`` with ``text`` atomically (a temporary file renamed over it)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def load(path):
    """``(arrays, info)`` from a file written by ``save``."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files if key != "__info__"}
        info = json.loads(str(data["__info__"]))
    return arrays, info


def prefixed(arrays, prefix):
    """The entries of ``arrays`` under ``prefix/``, with the prefix removed."""
    start = len(prefix) + 1
    return {key[start:]: value for key, value in arrays.items() if key.startswith(prefix + "/")}


def variable_arrays(prefix, variables):
    """``{prefix/key: value}`` for a dict of variables (key: name) or a list (key: index)."""
    items = variables.items() if isinstance(variables, dict) else enumerate(variables)
    return {f"{prefix}/{key}": np.asarray(variable.numpy()) for key, variable in items}


def assign_arrays(prefix, variables, arrays):
    """Inverse of ``variable_arrays``: assigns each variable its saved value."""
    items = variables.items() if isinstance(variables, dict) else enumerate(variables)
    for key, variable in items:
        variable.assign(arrays[f"{prefix}/{key}"])

"""Checkpoint files: named numpy arrays plus JSON metadata, written durably.

A write goes to a temporary file that is synced to disk and then renamed over
the target, and the folder is synced after the rename: a run killed, or a
machine that loses power, mid-write leaves the previous checkpoint intact; a
write that fails (a full disk) removes its temporary file and raises an
OSError naming the file it was writing (``atomic_write``).
Reading checks what it reads: a damaged or incomplete file raises one
``CheckpointError`` naming the file and what is wrong, never its bytes.
"""

import json
import math
import os

import numpy as np

from l2o.validation import ConfigError

INFO = "__info__"
# Damaged bytes fail anywhere from the zip layer down to numpy's header parser
# (BadZipFile, zlib.error, EOFError, ValueError, SyntaxError, tokenize.TokenError,
# MemoryError for a garbled shape, ...): any failure to parse them means damage.
_UNREADABLE = Exception


class CheckpointError(ConfigError):
    """A checkpoint that is missing, damaged or incomplete; the message names the file."""


class CheckpointMismatch(ConfigError):
    """A checkpoint written for another config than the one it is used with."""


class Entries(dict):
    """A checkpoint's arrays or info: a missing key raises CheckpointError naming the file."""

    def __init__(self, path, entries):
        super().__init__(entries)
        self.path = path

    def __missing__(self, key):
        raise CheckpointError(f"{self.path}: incomplete checkpoint: no entry {key!r}")


def save(path, arrays, info, previous=None):
    """Writes ``arrays`` and ``info`` to ``path``; ``previous`` keeps the file it replaces.

    The replaced file is renamed to ``previous`` only once the new one is on
    disk, so one of the two always holds a complete checkpoint.
    """
    atomic_write(path, lambda handle: np.savez(handle, **{INFO: np.array(json.dumps(info))},
                                               **arrays),
                 suffix=".tmp.npz", previous=previous)


def write_text(path, text):
    """Replaces ``path`` with ``text`` durably (a synced temporary file renamed over it)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def atomic_write(path, write, suffix=".tmp", previous=None):
    """Replaces ``path`` by what ``write(binary handle)`` writes, all or nothing.

    The bytes go to ``path + suffix``, are synced to disk and renamed over ``path``
    (after ``path`` is renamed to ``previous``, if given and present); the folder is
    synced after. A failure (a full disk, an unwritable folder) removes the temporary
    file, leaves ``path`` as it was, and raises OSError naming ``path``.
    """
    folder = os.path.dirname(path) or "."
    temporary = path + suffix
    try:
        os.makedirs(folder, exist_ok=True)
        try:
            with open(temporary, "wb") as handle:
                write(handle)
                _sync(handle)
            if previous is not None and os.path.exists(path):
                os.replace(path, previous)
            os.replace(temporary, path)
        finally:
            _remove_quietly(temporary)
        _sync_folder(folder)
    except OSError as error:
        raise _naming(error, path, temporary) from None


def append_line(path, line):
    """Appends ``line`` and a newline to ``path`` and syncs it to disk (a failure names it)."""
    try:
        with open(path, "a") as handle:
            handle.write(line + "\n")
            _sync(handle)
    except OSError as error:
        raise _naming(error, path) from None


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:  # never written, or already renamed into place
        pass


def _naming(error, path, temporary=None):
    """``error`` as an OSError of the same kind whose message names ``path`` (not its
    temporary file)."""
    if error.errno is None:
        return OSError(f"{path}: {error}")
    if error.filename is not None and error.filename != temporary:
        return error  # names its own file already (a folder that could not be made, ...)
    return type(error)(error.errno, error.strerror or str(error), path)


def _sync(handle):
    handle.flush()
    os.fsync(handle.fileno())


def _sync_folder(folder):
    """Makes a rename in ``folder`` durable (POSIX; other systems cannot open a folder)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load(path):
    """``(arrays, info)`` from a file written by ``save``; CheckpointError if it is damaged.

    Both are ``Entries``: looking up an entry the file lacks raises
    CheckpointError too, so an incomplete file is reported as such wherever
    its entries are used.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = np.load(path)  # allow_pickle stays off: garbage is refused, never unpickled
    except _UNREADABLE:
        raise _damaged(path, "not an .npz archive (truncated or overwritten?)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise _damaged(path, "a bare array, not an .npz archive")
    entries = {}
    with data:
        for key in data.files:
            try:
                entries[key] = data[key]
            except _UNREADABLE:
                raise _damaged(path, f"{_entry_name(key)} is corrupt") from None
    if INFO not in entries:
        raise _damaged(path, f"no {INFO} entry")
    try:
        info = json.loads(str(entries.pop(INFO)),
                          object_hook=lambda mapping: Entries(path, mapping))
    except ValueError:
        raise _damaged(path, f"its {INFO} entry is not valid JSON") from None
    if not isinstance(info, dict):
        raise _damaged(path, f"its {INFO} entry is not a mapping")
    return Entries(path, entries), info


def _entry_name(key):
    """A name to show: a garbled one would put the file's raw bytes in the message."""
    return f"entry {key!r}" if key.isprintable() and len(key) <= 80 else "an entry (garbled name)"


def _damaged(path, what):
    return CheckpointError(f"{path}: damaged checkpoint: {what}")


def finite_or_none(value):
    """``value`` (nested dicts and lists) with each non-finite number replaced by None."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def json_dumps_finite(value, **options):
    """Standard JSON (no NaN or Infinity tokens): a non-finite number becomes ``null``."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)


def prefixed(arrays, prefix):
    """The entries of ``arrays`` under ``prefix/``, with the prefix removed (``Entries`` of
    the same file where ``arrays`` are, so that what is missing names the file)."""
    start = len(prefix) + 1
    entries = {key[start:]: value for key, value in arrays.items()
               if key.startswith(prefix + "/")}
    return Entries(arrays.path, entries) if isinstance(arrays, Entries) else entries


def variable_arrays(prefix, variables):
    """``{prefix/key: value}`` for a dict of variables (key: name) or a list (key: index)."""
    items = variables.items() if isinstance(variables, dict) else enumerate(variables)
    return {f"{prefix}/{key}": np.asarray(variable.numpy()) for key, variable in items}


def assign_arrays(prefix, variables, arrays):
    """Inverse of ``variable_arrays``: assigns each variable its saved value.

    A saved shape that differs from the variable's means the checkpoint was
    written for another config (older checkpoints record none to compare).
    """
    items = variables.items() if isinstance(variables, dict) else enumerate(variables)
    for key, variable in items:
        value = arrays[f"{prefix}/{key}"]
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointMismatch(
                f"{getattr(arrays, 'path', 'checkpoint')}: entry '{prefix}/{key}' has shape "
                f"{tuple(value.shape)} but the run's config makes it {tuple(variable.shape)}: "
                f"restore config.json or start a new run")
        variable.assign(value)

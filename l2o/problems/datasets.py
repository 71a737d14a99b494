"""Classification data as in-memory arrays, from four kinds of source.

- ``digits``: scikit-learn's embedded 8x8 digits (offline; the default).
- ``moons``: scikit-learn's two half-moons, 2-D points (offline).
- a path to a folder in MNIST's IDX format (MNIST, Fashion-MNIST, KMNIST,
  notMNIST): ``train-*`` and ``t10k-*`` files, gzipped or not; with only one
  split present it is divided into training and validation deterministically.
  A path has a separator or starts with ``.``; anything else is a name.
- a name (``mnist``, ``fashion_mnist``, ...): the IDX folder ``<root>/<name>``,
  where the root is ``data_dir``, else the environment variable ``L2O_DATA``;
  without IDX files there, TensorFlow Datasets loads it from the root
  (downloading it there if absent, which needs the network: offline, it fails
  within seconds, and a failed download leaves nothing half-written there).

Images come back as float32 in [0, 1], shaped (N, height, width, channels)
(moons: points shaped (N, 2)); labels as int32.
"""

import contextlib
import functools
import gzip
import logging
import os
import shutil
import socket
import threading
import zlib

import numpy as np

from l2o.validation import first_line, shortened

# The folder holding one ``<name>/`` folder of IDX files per named data set, when the
# problem gives no ``data_dir``; e.g. ``$L2O_DATA/mnist/t10k-images-idx3-ubyte.gz``.
DATA_ROOT_VARIABLE = "L2O_DATA"


class DataError(ValueError):
    """A data set that cannot be loaded; the message says which and why."""


def load(dataset, data_dir=None, validation_split=0.2):
    """``{"x_train", "y_train", "x_val", "y_val", "classes"}`` for ``dataset``."""
    if dataset == "digits":
        return _split(*_digits(), validation_split)
    if dataset == "moons":
        return _split(*_moons(), validation_split)
    if os.sep in dataset or dataset.startswith("."):
        return _idx_folder(dataset, validation_split)
    return _named(dataset, data_dir, validation_split)


def _named(name, data_dir, validation_split):
    """The IDX folder ``<root>/<name>``, else TensorFlow Datasets' ``name`` kept in the root.

    The root is ``data_dir``, else ``$L2O_DATA``; TensorFlow Datasets uses its own
    default folder when neither is given.
    """
    root, root_key = ((data_dir, "data_dir") if data_dir is not None
                      else (os.environ.get(DATA_ROOT_VARIABLE), DATA_ROOT_VARIABLE))
    if root is not None and _holds_idx(os.path.join(root, name)):
        return _idx_folder(os.path.join(root, name), validation_split)
    try:
        return _tfds(name, root)
    except _tfds_failures() as error:
        looked = (f"{root_key} {root!r} holds no {name}/ IDX files" if root is not None
                  else f"{DATA_ROOT_VARIABLE} is not set")
        here = f"; for the folder here, write ./{name}" if os.path.isdir(name) else ""
        raise DataError(
            f"dataset: {name!r} not found: {looked}, and TensorFlow Datasets could not load it "
            f"({type(error).__name__}: {shortened(first_line(error), 200)}); set "
            f"{DATA_ROOT_VARIABLE} (or data_dir) to a folder holding {name}/ with its IDX "
            f"files{here}") from None


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[..., None].astype(np.float32) / 16.0,
            digits.target.astype(np.int32))


@functools.cache
def _moons():
    """scikit-learn's two interleaved half-moons: 1000 points, noise 0.1, fixed seed."""
    from sklearn.datasets import make_moons

    points, labels = make_moons(n_samples=1000, noise=0.1, random_state=0)
    return points.astype(np.float32), labels.astype(np.int32)


def _split(images, labels, validation_split):
    """Deterministic split: a fixed permutation, the last ``validation_split`` to validation."""
    order = np.random.default_rng(0).permutation(len(labels))
    cut = len(labels) - round(validation_split * len(labels))
    return {"x_train": images[order[:cut]], "y_train": labels[order[:cut]],
            "x_val": images[order[cut:]], "y_val": labels[order[cut:]],
            "classes": int(labels.max()) + 1}


def _read_idx(path):
    """The array in an IDX file of unsigned bytes (gzipped if its name ends in ``.gz``).

    Its size is checked against its header: a damaged file (a truncated download, a
    cut ``.gz``, labels fewer than the header counts) is a DataError naming the file.
    """
    again = "download it again"
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"dataset: {path}: damaged gzip file ({first_line(error)}); "
                        f"{again}") from None
    except OSError as error:
        raise DataError(f"dataset: {path}: cannot be read ({error.strerror or error})") from None
    magic = int.from_bytes(data[:4], "big")
    dims = magic & 0xFF
    if len(data) < 4 or magic >> 8 != 0x08 or dims not in (1, 3):
        raise DataError(f"dataset: {path}: not an IDX file of unsigned bytes (images or "
                        f"labels); {again}")
    start = 4 + 4 * dims
    if len(data) < start:
        raise DataError(f"dataset: {path}: truncated inside its header ({len(data)} bytes); "
                        f"{again}")
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    expected, held = int(np.prod(shape)), len(data) - start
    if held != expected:
        says = (f"{shape[0]} images of {shape[1]}x{shape[2]}" if dims == 3
                else f"{shape[0]} labels")
        what = "truncated" if held < expected else "longer than its header says"
        raise DataError(f"dataset: {path}: {what}: its header says {says} ({expected} bytes) "
                        f"but it holds {held} bytes; {again}")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def _find(folder, prefix, kind):
    for name in sorted(os.listdir(folder)):
        if name.startswith(prefix) and kind in name:
            return os.path.join(folder, name)
    return None


def _holds_idx(folder):
    """Whether ``folder`` has an IDX split (TensorFlow Datasets' own folders have none)."""
    return os.path.isdir(folder) and any(_find(folder, prefix, "images")
                                         for prefix in ("train", "t10k"))


@functools.cache
def _idx_split(folder, prefix):
    images, labels = _find(folder, prefix, "images"), _find(folder, prefix, "labels")
    if images is None or labels is None:
        return None
    x, y = _read_idx(images), _read_idx(labels)
    if len(x) != len(y):
        raise DataError(f"dataset: {images} has {len(x)} images but {labels} {len(y)} labels")
    return x[..., None].astype(np.float32) / 255.0, y.astype(np.int32)


def _idx_folder(folder, validation_split):
    if not os.path.isdir(folder):
        raise DataError(f"dataset: no such folder {folder!r} (expected an MNIST-format IDX "
                        f"folder, 'digits', or a TensorFlow Datasets name)")
    train, test = _idx_split(folder, "train"), _idx_split(folder, "t10k")
    if train is None and test is None:
        raise DataError(f"dataset: {folder!r} holds no IDX image/label files "
                        f"(train-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], ...)")
    if train is not None and test is not None:
        return {"x_train": train[0], "y_train": train[1], "x_val": test[0], "y_val": test[1],
                "classes": int(max(train[1].max(), test[1].max())) + 1}
    return _split(*(train or test), validation_split)


# TensorFlow Datasets' download host (MNIST and many of its sets come from there), tried
# before a download: offline, TensorFlow Datasets retries each file for minutes.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
REACH_SECONDS = 3.0


def _reachable(address=DOWNLOAD_HOST, seconds=REACH_SECONDS):
    """Whether a TCP connection to ``address`` (or to the HTTPS proxy, where one is set)
    opens within ``seconds``, name lookup included."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    proxy = getproxies().get("https")
    if proxy:
        parts = urlsplit(proxy if "//" in proxy else "//" + proxy)
        address = (parts.hostname, parts.port or 80)
    answer = []

    def connect():
        try:
            socket.create_connection(address, timeout=seconds).close()
            answer.append(True)
        except OSError:  # no route, no name server, refused, timed out
            pass

    # A thread, so that a name lookup that hangs (getaddrinfo has no timeout) cannot.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(seconds + 0.5)
    return bool(answer)


@functools.cache
def _tfds(name, data_dir):
    import tensorflow_datasets as tfds

    # Offline, a download's progress bars and warnings (absl: a half-made folder; urllib3:
    # each retry) would bury the one-line error. For the rest of the process: the download's
    # threads go on retrying after the first failure has been reported.
    tfds.disable_progress_bar()
    for logger in ("absl", "urllib3"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    builder = tfds.builder(name, data_dir=data_dir)  # an unknown name fails here, offline too
    root = os.fspath(builder.data_dir_root)
    if not builder.is_prepared() and not _reachable():
        raise ConnectionError(f"no copy in {root}, and its download host {DOWNLOAD_HOST[0]} "
                              f"cannot be reached (offline?)")
    with _removed_on_failure(root):
        train, test = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1,
                                              as_supervised=True, data_dir=data_dir,
                                              download=True))
    scale = 255.0 if train[0].dtype == np.uint8 else 1.0
    return {"x_train": train[0].astype(np.float32) / scale, "y_train": train[1].astype(np.int32),
            "x_val": test[0].astype(np.float32) / scale, "y_val": test[1].astype(np.int32),
            "classes": int(train[1].max()) + 1}


@contextlib.contextmanager
def _removed_on_failure(root):
    """Removes what a failed download added under ``root`` (TensorFlow Datasets' folder):
    the entries up to three levels down that were not there before (its partial files in
    ``downloads/``, its ``<name>/incomplete...`` folder), or ``root`` itself if it made it."""
    existed, before = os.path.isdir(root), _entries(root)
    try:
        yield
    except BaseException:
        added = [root] if not existed else sorted(_entries(root) - before, key=len)
        for path in added:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                try:
                    os.remove(path)
                except OSError:
                    pass
        raise


def _entries(root, depth=3):
    """The paths up to ``depth`` levels below ``root``."""
    found, level = set(), [root]
    for _ in range(depth):
        following = []
        for folder in level:
            try:
                names = os.listdir(folder)
            except OSError:  # not a folder, or gone
                continue
            paths = [os.path.join(folder, name) for name in names]
            found.update(paths)
            following.extend(path for path in paths if os.path.isdir(path)
                             and not os.path.islink(path))
        level = following
    return found


def _tfds_failures():
    """What TensorFlow Datasets raises for a set it cannot get: unknown, offline, damaged."""
    try:
        import tensorflow as tf
        from tensorflow_datasets import download
    except ImportError:
        return (ImportError,)
    return (ImportError, ValueError, OSError, download.DownloadError, tf.errors.OpError)


def resize(images, size):
    """``images`` (N, H, W, C) resampled to (N, size, size, C) by area averaging.

    Output pixel i along an axis of n input pixels covers the input span
    [i n / size, (i + 1) n / size) and is the mean of the input over it, each
    input pixel weighted by its overlap (28 -> 8 averages 3.5 x 3.5 pixels);
    enlarging repeats pixels.
    """
    return np.einsum("ih,nhwc,jw->nijc", _area_weights(images.shape[1], size), images,
                     _area_weights(images.shape[2], size)).astype(np.float32)


def _area_weights(length, size):
    """(size, length) matrix: the overlap of input pixel j with output pixel i, over its width."""
    edges = np.arange(size + 1) * (length / size)
    starts, ends = np.arange(length), np.arange(1, length + 1)
    overlap = (np.minimum(ends[None], edges[1:, None])
               - np.maximum(starts[None], edges[:-1, None])).clip(0)
    return overlap / (length / size)

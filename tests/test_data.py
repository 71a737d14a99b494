"""Named data sets: `dataset: mnist` reads <data_dir or $L2O_DATA>/mnist, else TensorFlow
Datasets; offline, one line naming the data set, the folder looked in and the fix."""

import gzip
import logging
import os
import time

import numpy as np
import pytest
import yaml
from conftest import tiny_config

from l2o import cli
from l2o.problems import build, datasets
from l2o.validation import ConfigError


@pytest.fixture
def offline(monkeypatch, tmp_path_factory):
    """TensorFlow Datasets without the network: every load fails as a download would.

    Runs in an empty working directory; returns the arguments of each attempted load.
    """
    import tensorflow_datasets as tfds

    attempts = []
    levels = {name: logging.getLogger(name).level for name in ("absl", "urllib3")}

    def load(name, **kwargs):
        attempts.append({"name": name, **kwargs})
        logging.getLogger("absl").warning("Variant folder mnist/3.0.1 has no dataset_info.json")
        logging.getLogger("urllib3.connectionpool").warning("Retrying after connection broken")
        raise tfds.download.DownloadError("Failed to get url https://example.invalid/mnist")

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(datasets, "_reachable", lambda *args, **kwargs: True)  # as online
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield attempts
    for name, level in levels.items():  # loading quiets them for good: not past this test
        logging.getLogger(name).setLevel(level)


def data_root(tmp_path, mnist_folder, *names):
    """A folder holding ``<name>/`` -> the MNIST IDX files, for each of ``names``."""
    tmp_path.mkdir(exist_ok=True)
    for name in names:
        (tmp_path / name).symlink_to(mnist_folder, target_is_directory=True)
    return str(tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_a_name_reads_its_folder_under_l2o_data(tmp_path, monkeypatch, mnist_folder, offline,
                                                name):
    monkeypatch.setenv("L2O_DATA", data_root(tmp_path, mnist_folder, name))
    data = datasets.load(name)
    expected = datasets.load(mnist_folder)
    assert data["x_train"].shape == (8000, 28, 28, 1)
    for key in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(data[key], expected[key])
    assert offline == []


def test_data_dir_comes_before_l2o_data(tmp_path, monkeypatch, mnist_folder, offline):
    monkeypatch.setenv("L2O_DATA", str(tmp_path / "empty"))
    data = datasets.load("mnist", data_dir=data_root(tmp_path / "given", mnist_folder, "mnist"))
    assert data["y_val"].shape == (2000,)
    with pytest.raises(datasets.DataError, match="data_dir '.*elsewhere' holds no mnist/ IDX"):
        datasets.load("mnist", data_dir=data_root(tmp_path / "elsewhere", mnist_folder, "kmnist"))


def test_without_idx_files_tensorflow_datasets_loads_from_the_root(tmp_path, monkeypatch,
                                                                     offline):
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)  # a TensorFlow Datasets folder
    monkeypatch.setenv("L2O_DATA", str(tmp_path))
    with pytest.raises(datasets.DataError):
        datasets.load("mnist")
    assert [(a["name"], a["data_dir"], a["download"]) for a in offline] == [
        ("mnist", str(tmp_path), True)]


def test_offline_error_is_one_line_naming_set_folder_and_fix(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("L2O_DATA", str(tmp_path))
    spec = {"target": "mlp_classifier", "args": [], "kwargs": {"dataset": "kmnist"}}
    with pytest.raises(ConfigError) as error:
        build(spec, "problems/1")
    expected = (
        f"problems/1/kwargs/dataset: 'kmnist' not found: L2O_DATA '{tmp_path}' holds no kmnist/ "
        f"IDX files, and TensorFlow Datasets could not load it (DownloadError: Failed to get url "
        f"https://example.invalid/mnist); set L2O_DATA (or data_dir) to a folder holding kmnist/ "
        f"with its IDX files")
    assert str(error.value) == expected
    os.mkdir("kmnist")  # a folder named like the set in the working directory: say how to use it
    with pytest.raises(ConfigError) as error:
        build(spec, "problems/1")
    assert str(error.value) == expected + "; for the folder here, write ./kmnist"


def test_cli_without_l2o_data_gives_one_line_and_exit_2(tmp_path, monkeypatch, capfd, caplog,
                                                        offline):
    monkeypatch.delenv("L2O_DATA", raising=False)
    config = tiny_config(tmp_path / "run")
    config["problems"][0]["kwargs"]["dataset"] = "mnist"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_status:
        cli.train([str(path)])
    assert exit_status.value.code == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(
        "error: problems/0/kwargs/dataset: 'mnist' not found: L2O_DATA is not set, and "
        "TensorFlow Datasets could not load it (DownloadError: "), err
    assert err.rstrip().endswith("set L2O_DATA (or data_dir) to a folder holding mnist/ with "
                                 "its IDX files")
    assert not (tmp_path / "run").exists()
    assert caplog.records == []


def test_offline_without_a_local_copy_fails_within_seconds_and_writes_nothing(
        tmp_path, monkeypatch, capfd):
    import tensorflow_datasets as tfds

    def load(name, **kwargs):
        raise AssertionError("TensorFlow Datasets was asked to download while offline")

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(datasets, "_reachable", lambda *args, **kwargs: False)  # offline
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("L2O_DATA", str(root))
    config = tiny_config(tmp_path / "run")
    config["problems"][0]["kwargs"]["dataset"] = "mnist"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_status:
        cli.train([str(path)])
    assert time.monotonic() - started < 15
    assert exit_status.value.code == 2
    assert capfd.readouterr().err == (
        f"error: problems/0/kwargs/dataset: 'mnist' not found: L2O_DATA '{root}' holds no "
        f"mnist/ IDX files, and TensorFlow Datasets could not load it (ConnectionError: no "
        f"copy in {root}, and its download host storage.googleapis.com cannot be reached "
        f"(offline?)); set L2O_DATA (or data_dir) to a folder holding mnist/ with its IDX "
        f"files\n")
    assert os.listdir(root) == [] and not (tmp_path / "run").exists()


def test_the_reachability_check_gives_up_within_its_time():
    started = time.monotonic()
    assert not datasets._reachable(("host.invalid", 443), seconds=1.0)  # never resolves
    assert time.monotonic() - started < 2


def test_a_failed_download_leaves_nothing_half_written(tmp_path, monkeypatch, offline):
    import tensorflow_datasets as tfds

    root = tmp_path / "data"
    (root / "downloads" / "mnist").mkdir(parents=True)
    kept = [root / "notes.txt", root / "downloads" / "mnist" / "finished.gz"]
    for path in kept:
        path.write_text("the user's")
    fail = tfds.load

    def partial_download(name, **kwargs):  # what an interrupted download leaves
        (root / "downloads" / "mnist" / "t10k.gz.tmp.5cc4").write_text("partial")
        (root / "downloads" / "extracted").mkdir()
        (root / "mnist" / "incomplete.T3X3XG_3.0.1").mkdir(parents=True)
        fail(name, **kwargs)

    monkeypatch.setattr(tfds, "load", partial_download)
    monkeypatch.setenv("L2O_DATA", str(root))
    with pytest.raises(datasets.DataError, match="DownloadError"):
        datasets.load("mnist")
    assert sorted(p for p in root.rglob("*") if p.is_file()) == sorted(kept)
    assert sorted(p.name for p in root.iterdir()) == ["downloads", "notes.txt"]


def idx_bytes(array):
    """``array`` (uint8, 1 or 3 dimensions) in MNIST's IDX format."""
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
        size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_folder(folder, images=None, labels=None, gz=False):
    """A folder of t10k IDX files (5 images of 4x4 unless given), gzipped if ``gz``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {"images": idx_bytes(rng.integers(0, 255, (5, 4, 4))) if images is None else images,
            "labels": idx_bytes(np.arange(5) % 2) if labels is None else labels}
    paths = {}
    for kind, content in data.items():
        name = f"t10k-{kind}-idx{3 if kind == 'images' else 1}-ubyte" + (".gz" if gz else "")
        paths[kind] = folder / name
        paths[kind].write_bytes(gzip.compress(content) if gz else content)
    return paths


def test_sound_idx_files_load(tmp_path):
    idx_folder(tmp_path / "sound")
    data = datasets.load(str(tmp_path / "sound"), validation_split=0.4)
    assert data["x_train"].shape == (3, 4, 4, 1) and data["classes"] == 2


images = idx_bytes(np.zeros((5, 4, 4)))
labels = idx_bytes(np.arange(5) % 2)


@pytest.mark.parametrize("files, kind, problem", [
    ({"images": images[:40]}, "images",
     "truncated: its header says 5 images of 4x4 (80 bytes) but it holds 24 bytes"),
    ({"labels": labels[:-2]}, "labels",
     "truncated: its header says 5 labels (5 bytes) but it holds 3 bytes"),
    ({"labels": labels + b"xx"}, "labels",
     "longer than its header says: its header says 5 labels (5 bytes) but it holds 7 bytes"),
    ({"images": images[:10]}, "images", "truncated inside its header (10 bytes)"),
    ({"images": b"<html>Not Found</html>"}, "images",
     "not an IDX file of unsigned bytes (images or labels)"),
], ids=["images-truncated", "labels-short", "labels-long", "header-cut", "not-idx"])
def test_a_damaged_idx_file_is_one_line_naming_it(tmp_path, files, kind, problem):
    paths = idx_folder(tmp_path / "damaged", **files)
    with pytest.raises(datasets.DataError) as raised:
        datasets.load(str(tmp_path / "damaged"))
    assert str(raised.value) == f"dataset: {paths[kind]}: {problem}; download it again"


def test_a_truncated_gz_is_one_line_naming_it_and_exit_2(tmp_path, capfd):
    paths = idx_folder(tmp_path / "cut", gz=True)
    content = paths["images"].read_bytes()
    paths["images"].write_bytes(content[:len(content) // 2])
    path = tmp_path / "config.yaml"
    config = tiny_config(tmp_path / "run")
    config["problems"][0]["kwargs"]["dataset"] = str(tmp_path / "cut")
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_status:
        cli.train([str(path)])
    assert exit_status.value.code == 2
    assert capfd.readouterr().err == (
        f"error: problems/0/kwargs/dataset: {paths['images']}: damaged gzip file (Compressed "
        f"file ended before the end-of-stream marker was reached); download it again\n")
    assert not (tmp_path / "run").exists()

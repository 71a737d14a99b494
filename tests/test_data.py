"""Named data sets: `dataset: mnist` reads <data_dir or $L2O_DATA>/mnist, else TensorFlow
Datasets; offline, one line naming the data set, the folder looked in and the fix."""

import logging
import os

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

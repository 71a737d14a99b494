import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
MNIST = os.path.join(SHARED_DATA, "mnist")
# `dataset: mnist` (the shipped configs) reads $L2O_DATA/mnist: the data at hand, no download.
if os.path.isdir(SHARED_DATA):
    os.environ.setdefault("L2O_DATA", SHARED_DATA)


def load_script(folder, name):
    """``folder/name.py`` (a benchmark or an example) as a module, its ``main`` not run."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mnist_folder():
    if not os.path.isdir(MNIST):
        pytest.skip(f"shared MNIST data not found at {MNIST}")
    return MNIST


def tiny_config(directory, **sections):
    """A small, fast meta-training config on the digits MLP."""
    config = {
        "problems": [{"target": "mlp_classifier",
                      "kwargs": {"layers": [8], "dataset": "digits", "batch_size": 32}}],
        "training": {"depth": 2},
        "strategy": {"num_periods": 2, "epochs_per_period": 2, "unroll_distribution": 5,
                     "validation_unroll": 10, "validation_repeat": 1},
        "evaluation": {"steps": 12, "repeats": 2, "validation_every": 4},
        "directory": str(directory),
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config

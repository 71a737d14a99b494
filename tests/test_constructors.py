"""The Python constructors share the config path's checks: a bad value is a ValueError naming
the argument, raised by the constructor itself, before Keras makes a variable or TensorFlow
runs an op; and learning rates that make no sense, of the learned optimisers and of the
meta-optimiser, are refused."""

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import ROOT

import l2o
from l2o import cli
from l2o.config import resolve
from l2o.optimizers import (
    DMOptimizer,
    DMRule,
    NormalizedMLPOptimizer,
    PIOOptimizer,
    PIORule,
    RNNPropOptimizer,
    ScaleBasicOptimizer,
    ScaleHierarchicalOptimizer,
    ScheduledSGD,
)
from l2o.validation import ConfigError


def dm_weights(**changes):
    """DM's default meta-weights with some replaced (None: removed)."""
    weights = DMRule().init_meta_weights(0)
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            del weights[key]
        else:
            weights[key] = value
    return weights


# (constructor, keyword arguments, message): each once crashed or failed deep in TensorFlow.
BAD_ARGUMENTS = [
    (DMOptimizer, {"network": {"layers": [0]}},
     "network/layers: must be a non-empty list of positive ints, got [0]"),
    (DMOptimizer, {"network": {"layers": [-3]}},
     "network/layers: must be a non-empty list of positive ints, got [-3]"),
    (DMOptimizer, {"network": {"layers": "big"}}, "network/layers: expected list, got str 'big'"),
    (DMOptimizer, {"network": 5}, "network: must be a mapping of DMRule settings, got 5"),
    (DMOptimizer, {"network": {"layerz": [3]}},
     "network/layerz: unknown key; did you mean 'layers'?"),
    (DMOptimizer, {"network": {"output_scale": -1}}, "network/output_scale: must be above 0.0"),
    (DMOptimizer, {"network": {"output_scale": math.inf}},
     "network/output_scale: must be finite, got inf"),
    (DMOptimizer, {"learning_rate": -1.0}, "learning_rate: must be a positive number, got -1.0"),
    (DMOptimizer, {"learning_rate": math.nan}, "learning_rate: must be a positive number, got nan"),
    (DMOptimizer, {"learning_rate": math.inf}, "learning_rate: must be a positive number, got inf"),
    (DMOptimizer, {"learning_rate": "fast"}, "learning_rate: must be a positive number, got 'fast'"),
    (RNNPropOptimizer, {"learning_rate": -0.5}, "learning_rate: must be a positive number"),
    (NormalizedMLPOptimizer, {"learning_rate": 0}, "learning_rate: must be a positive number"),
    (ScheduledSGD, {"learning_rate": -2}, "learning_rate: must be a positive number"),
    (DMOptimizer, {"meta_weights": {"foo": np.zeros(3)}},
     "meta_weights/foo: unknown meta-weight; expected lstm_0/bias, lstm_0/kernel"),
    (DMOptimizer, {"meta_weights": dm_weights(lstm_0__kernel=np.zeros((3, 4)))},
     "meta_weights/lstm_0/kernel: shape (3, 4) does not match (2, 80)"),
    (DMOptimizer, {"meta_weights": dm_weights(output__bias=None)},
     "meta_weights/output/bias: missing; expected lstm_0/bias"),
    (DMOptimizer, {"meta_weights": dm_weights(output__bias="x")},
     "meta_weights/output/bias: not an array of numbers"),
    (DMOptimizer, {"meta_weights": [1.0]}, "meta_weights: must be a mapping"),
    (ScaleBasicOptimizer, {"network": {"timescales": 9}},
     "network/timescales: must be above 0 and at most 8, got 9"),
    (ScaleHierarchicalOptimizer, {"network": {"init_lr": []}},
     "network/init_lr: must be [low, high] with 0 < low <= high, got []"),
    (PIOOptimizer, {"network": {"trajectories": 0}}, "network/trajectories: must be above 0"),
    (PIOOptimizer, {"network": {"sigma": -1}}, "network/sigma: must be above 0.0, got -1.0"),
    (PIOOptimizer, {"network": {"drift_format": "g"}}, "network/drift_format: unknown value 'g'"),
    (PIOOptimizer, {"learning_rate": -0.01}, "learning_rate: must be a positive number"),
    (PIOOptimizer, {"meta_weights": {"state/in/kernel": np.zeros((3, 64)), "foo": 0.0}},
     "meta_weights/foo: unknown meta-weight"),
]


@pytest.mark.parametrize("constructor, arguments, message", BAD_ARGUMENTS)
def test_constructor_refuses_before_keras_makes_a_variable(constructor, arguments, message,
                                                           monkeypatch):
    def keras_reached(*args, **kwargs):
        raise AssertionError("the check came after keras.optimizers.Optimizer.__init__")

    # Keras's constructor makes the optimiser's first variables: nothing before it has
    # handed the bad value to TensorFlow.
    monkeypatch.setattr(keras.optimizers.Optimizer, "__init__", keras_reached)
    with pytest.raises(ValueError) as raised:
        constructor(**arguments)
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, ConfigError)


@pytest.mark.parametrize("constructor, network", [
    (constructor, arguments["network"]) for constructor, arguments, _ in BAD_ARGUMENTS
    if isinstance(arguments.get("network"), dict)])
def test_config_and_constructor_give_the_same_error(constructor, network):
    """One rule, two doors: the config path refuses the same network with the same line."""
    name = {DMOptimizer: "DM", ScaleBasicOptimizer: "ScaleBasic",
            ScaleHierarchicalOptimizer: "ScaleHierarchical", PIOOptimizer: "PIO"}[constructor]
    base = {"constructor": name, "network": network}
    if name == "PIO":
        base["problems"] = [{"target": "carrillo"}]
    with pytest.raises(ConfigError) as from_config:
        resolve(base)
    with pytest.raises(ConfigError) as from_constructor:
        constructor(network=network)
    assert str(from_config.value) == str(from_constructor.value)


@pytest.mark.slow
def test_layer_of_zero_units_no_longer_aborts_model_fit():
    """It was a SIGABRT from oneDNN inside model.fit; now one ValueError from the constructor."""
    snippet = textwrap.dedent("""
        import keras, numpy as np
        from l2o.optimizers import DMOptimizer
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer=DMOptimizer(network={"layers": [0]}), loss="mse")
        model.fit(np.ones((8, 4), "float32"), np.ones((8, 3), "float32"), verbose=0)
    """)
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, check=False,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == ("l2o.validation.ConfigError: network/layers: must be a non-empty list "
                         "of positive ints, got [0]")
    assert "model.fit" not in result.stderr  # raised by the constructor, before fit ran


def test_pio_checks_meta_weight_shapes_against_the_model_at_build():
    network = {"channels": 4, "layers": 1}
    trained = PIORule(**network).init_meta_weights(0, 5)
    optimizer = PIOOptimizer(network=network, meta_weights=trained)
    with pytest.raises(ValueError, match=r"meta_weights/state/in/kernel: shape \(5, 4\) does "
                                         r"not match \(7, 4\)"):
        optimizer.build([keras.Variable(np.zeros((7,), "float32"))])
    fitting = PIOOptimizer(network=network, meta_weights=trained)
    fitting.build([keras.Variable(np.zeros((5,), "float32"))])
    np.testing.assert_array_equal(fitting.meta_weights()["state/in/kernel"],
                                  trained["state/in/kernel"])


def test_pio_without_a_model_in_model_fit_says_to_pass_one():
    optimizer = PIOOptimizer(network={"channels": 4, "layers": 1, "trajectories": 2})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    with pytest.raises(ValueError) as raised:
        model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), verbose=0)
    assert "build it with model=... (model.fit) or call apply_loss" in str(raised.value)
    assert not optimizer.built  # refused before its build, which failed on symbolic tensors


@pytest.mark.parametrize("key", ["optimizer/config/learning_rate",
                                 "evaluation/baseline/config/learning_rate",
                                 "evaluation/baseline/learning_rates/1"])
@pytest.mark.parametrize("value", ["-0.01", "0", ".nan", "fast"])
def test_meta_learning_rates_that_make_no_sense_are_refused(key, value):
    overrides = ["evaluation/baseline/learning_rates=[0.01, 0.1]", f"{key}={value}"]
    with pytest.raises(ConfigError, match=f"^{key}: must be a positive number, got "):
        resolve({}, overrides)


def test_imitation_optimizer_learning_rate_is_checked():
    spec = {"class_name": "SGD", "config": {"learning_rate": -1.0}}
    with pytest.raises(ConfigError, match="^training/imitation_optimizer/config/learning_rate: "
                                          "must be a positive number, got -1.0"):
        resolve({"training": {"imitation_optimizer": spec}})


def test_integer_learning_rates_become_floats_and_schedules_pass():
    config = resolve({"training": {"imitation_optimizer": {"class_name": "SGD",
                                                           "config": {"learning_rate": 1}}}},
                     ["optimizer/config/learning_rate=1",
                      "evaluation/baseline/config/learning_rate=2",
                      "evaluation/baseline/learning_rates=[1, 3]"])
    rates = [config["optimizer"]["config"]["learning_rate"],
             config["training"]["imitation_optimizer"]["config"]["learning_rate"],
             config["evaluation"]["baseline"]["config"]["learning_rate"],
             *config["evaluation"]["baseline"]["learning_rates"]]
    assert rates == [1.0, 1.0, 2.0, 1.0, 3.0]
    assert all(type(rate) is float for rate in rates)
    schedule = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.01, "decay_steps": 10, "decay_rate": 0.9}}
    config = resolve({"optimizer": {"class_name": "Adam", "config": {"learning_rate": schedule}}})
    assert config["optimizer"]["config"]["learning_rate"] == schedule


def test_cli_refuses_a_negative_meta_learning_rate_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.train(["quickstart", "optimizer/config/learning_rate=-0.01", "--dry-run"])
    assert exit_status.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: optimizer/config/learning_rate: must be a positive number, "
                            "got -0.01\n")


def test_learned_optimizers_take_an_int_learning_rate_as_a_float_and_schedules_as_given():
    """As a config does: ``learning_rate: 2`` is 2.0 (Keras alone refuses an int)."""
    assert type(DMOptimizer(learning_rate=2).get_config()["learning_rate"]) is float
    assert float(RNNPropOptimizer(learning_rate=np.float32(0.5)).learning_rate) == 0.5
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    optimizer = DMOptimizer(learning_rate=schedule)
    assert float(optimizer.learning_rate) == 1.0
    assert optimizer.get_config()["learning_rate"]["class_name"] == "ExponentialDecay"


def test_load_optimizer_checks_its_learning_rate_and_its_argument(tmp_path):
    with pytest.raises(ConfigError, match=r"^learning_rate: must be a positive number, "
                                          r"got -1\.0$"):
        l2o.load_optimizer("pretrained:normalized_mlp_family", learning_rate=-1.0)
    with pytest.raises(ConfigError, match=r"^load_optimizer: expected a run directory or "
                                          r"'pretrained:NAME' \(shipped: .*\), got None$"):
        l2o.load_optimizer(None)
    with pytest.raises(ConfigError, match="not a run directory"):  # a Path is a directory too
        l2o.load_optimizer(tmp_path)

"""TensorFlow and JAX agree: the same config and seed give the same meta-gradients.

``backend_probe.py`` computes, on the backend Keras runs on, TBPTT
meta-gradients (DM, ScaleHierarchical, RNNProp, NormalizedMLP), ES and PES estimates, PIO's drift and
its gradient; here it runs in this (TensorFlow) process and in a
``KERAS_BACKEND=jax`` child, and every array must agree to 1e-4 relative
(float32). In float64, each backend's TBPTT gradient must match central finite
differences of its own meta-loss. A run moves between backends mid-way.
"""

import os
import subprocess
import sys

import backend_probe
import numpy as np
import pytest
import yaml
from conftest import ROOT, tiny_config

from l2o import api, checkpoints

PROBE = os.path.join(ROOT, "tests", "backend_probe.py")

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """``backend_probe``'s arrays on TensorFlow (this process) and on JAX (a child)."""
    path = tmp_path_factory.mktemp("probe") / "jax.npz"
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, PROBE, str(path)], env=environment,
                               capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return {"tensorflow": backend_probe.probe(), "jax": dict(np.load(path))}


def relative_difference(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


@pytest.mark.slow
def test_meta_gradients_agree_across_backends(probes):
    tensorflow, jax = probes["tensorflow"], probes["jax"]
    assert str(tensorflow["backend"]) == "tensorflow" and str(jax["backend"]) == "jax"
    names = [name for name in tensorflow if name != "backend"]
    assert sorted(names) == sorted(name for name in jax if name != "backend")
    for group in ("DM/initial/", "DM/tbptt/grad", "ScaleHierarchical/tbptt/grad",
                  "RNNProp/tbptt/grad", "NormalizedMLP/tbptt/grad", "es/grad", "pes/grad",
                  "pio/f/grad/", "pio/grad/grad/"):
        assert any(name.startswith(group) for name in names), group
    for name in names:
        assert np.all(np.isfinite(tensorflow[name])), name
        assert relative_difference(tensorflow[name], jax[name]) <= 1e-4, name
    # The estimates are not all zero (a gradient lost on one backend would agree as zeros).
    for group in ("DM/tbptt/grad", "ScaleHierarchical/tbptt/grad", "RNNProp/tbptt/grad",
                  "NormalizedMLP/tbptt/grad", "es/grad", "pes/grad"):
        assert max(np.max(np.abs(tensorflow[n])) for n in names if n.startswith(group)) > 0
    # PES's second truncation carries the first's noise: it differs from truncated ES's.
    assert relative_difference(tensorflow["es/grad0"], tensorflow["pes/grad0"]) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_tbptt_gradient_matches_finite_differences_in_float64(probes, backend):
    exact, finite = probes[backend]["fd/exact"], probes[backend]["fd/finite"]
    assert np.all(np.abs(exact) > 1e-6)
    np.testing.assert_allclose(exact, finite, rtol=1e-5)


def on_jax(tmp_path, script, *arguments):
    """Runs a top-level script under ``KERAS_BACKEND=jax``, with TensorFlow not importable."""
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is not installed')\n")
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": str(blocker.parent)}
    completed = subprocess.run([sys.executable, os.path.join(ROOT, script), *arguments],
                               env=environment, capture_output=True, text=True, cwd=ROOT,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]


def meta_weights(run, checkpoint="last"):
    arrays, _ = checkpoints.load(str(run / "checkpoints" / f"{checkpoint}.npz"))
    return {name: value for name, value in arrays.items() if name.startswith("meta/")}


@pytest.mark.slow
def test_a_run_resumes_on_the_other_backend(tmp_path):
    """PES meta-training, 2 periods: started on TensorFlow and resumed on JAX (where
    TensorFlow cannot be imported), and the reverse, end with the uninterrupted TensorFlow
    run's meta-weights (to 1e-4)."""
    sections = {"training": {"estimator": "pes", "n_particles": 4, "horizon": 12, "depth": 2},
                "strategy": {"num_periods": 1}}
    configs = {}
    for name in ("straight", "tensorflow_first", "jax_first"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(tiny_config(tmp_path / name, **sections)))
    api.train(str(configs["straight"]), ["strategy/num_periods=2"])
    api.train(str(configs["tensorflow_first"]))
    on_jax(tmp_path, "resume.py", str(tmp_path / "tensorflow_first"), "strategy/num_periods=2")
    on_jax(tmp_path, "train.py", str(configs["jax_first"]))
    api.resume(str(tmp_path / "jax_first"), ["strategy/num_periods=2"])
    expected = meta_weights(tmp_path / "straight")
    assert expected
    for name in ("tensorflow_first", "jax_first"):
        resumed = meta_weights(tmp_path / name)
        assert resumed.keys() == expected.keys()
        for key, value in expected.items():
            assert relative_difference(value, resumed[key]) <= 1e-4, (name, key)
    # The second period changed the meta-weights: a resume that trained nothing would fail.
    after_first = meta_weights(tmp_path / "straight", "period_0000")
    assert any(relative_difference(value, after_first[key]) > 1e-3
               for key, value in expected.items())

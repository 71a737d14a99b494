"""benchmarks/pio_paper/sigma_schedules.py --quick: each step ran at its schedule's sigma (by hand),
each seed is its own run, and the table's numbers are the curves' last values and minima."""

import json
import math

import numpy as np
import pytest
from conftest import load_script


@pytest.mark.slow
def test_quick_run_steps_at_the_scheduled_sigmas(tmp_path, capsys):
    benchmark = load_script("benchmarks/pio_paper", "sigma_schedules")
    out = tmp_path / "results.json"
    assert benchmark.main(["--quick", "--out", str(out)]) == 0
    with open(out) as handle:
        recorded = json.load(handle)
    steps = recorded["steps"]
    assert steps == 10
    # sigma_t from 0.1 down by 100x over the 10 steps, t = 0 .. 9, each seed from t = 0.
    expected = {
        "constant": lambda t: 0.1,
        "exponential": lambda t: 0.1 * 0.01 ** (t / steps),
        "cosine": lambda t: 0.1 * (0.99 * 0.5 * (1 + math.cos(math.pi * t / steps)) + 0.01),
        "inverse-time": lambda t: 0.1 / (1 + 99 * t / steps),
    }
    results = {result["schedule"]: result for result in recorded["results"]}
    assert list(results) == list(expected)
    for name, sigma in expected.items():
        result = results[name]
        curves = np.array(result["test_loss"])
        assert curves.shape == (2, steps) and np.all(np.isfinite(curves))
        np.testing.assert_allclose(result["sigma"], [[sigma(t) for t in range(steps)]] * 2,
                                   rtol=1e-5)
        np.testing.assert_allclose(result["final"], curves[:, -1])
        np.testing.assert_allclose(result["minimum"], curves.min(axis=1))
        # Two seeds, two runs (own drift initialisation and noise), not one run twice.
        assert not np.allclose(curves[0], curves[1])
    table = capsys.readouterr().out.split("| sigma schedule |", 1)[1]
    for name in expected:
        assert f"\n| {name} | " in table

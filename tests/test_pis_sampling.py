"""benchmarks/pio_paper/pis_sampling.py: its targets integrate to their stated Z (what makes the log Z
error exact), and --quick's 1-D mixture log Z estimate is close to the truth."""

import math

import numpy as np
import pytest
from conftest import load_script
from keras import ops

from l2o.systems.densities import Funnel, mixture_1d, mixture_2d


def load_benchmark():
    return load_script("benchmarks/pio_paper", "pis_sampling")


def density(target, points):
    return np.exp(-ops.convert_to_numpy(target.energy(ops.convert_to_tensor(points, "float32"))))


def test_mixture_1d_is_the_upstream_mixture_and_integrates_to_z():
    target = mixture_1d()
    grid = np.linspace(-10.0, 10.0, 20001)
    values = density(target, grid[:, None])
    assert abs(np.trapezoid(values, grid) - math.exp(target.log_normaliser)) < 1e-4
    # ou.yaml: two equally weighted N(+-1, 0.5^2).
    normal = lambda mean: np.exp(-0.5 * ((grid - mean) / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(values, 0.5 * (normal(-1.0) + normal(1.0)), rtol=1e-4, atol=1e-7)


def test_mixture_2d_integrates_to_z_on_a_grid():
    target = mixture_2d()
    axis = np.linspace(-3.0, 3.0, 601)
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    values = density(target, points).reshape(len(axis), len(axis))
    total = np.trapezoid(np.trapezoid(values, axis, axis=1), axis)
    assert abs(total - math.exp(target.log_normaliser)) < 1e-4


def test_funnel_integrates_to_z():
    # d = 2 by quadrature, on an x1 grid in units of x1's spread at each x0 (e^(x0 / 2)).
    small = Funnel(dimension=2)
    x0, units = np.linspace(-7.0, 7.0, 701), np.linspace(-9.0, 9.0, 1801)
    spread = np.exp(x0 / 2)[:, None]
    points = np.stack([np.repeat(x0[:, None], len(units), 1), spread * units[None]], -1)
    values = density(small, points.reshape(-1, 2)).reshape(len(x0), len(units)) * spread
    assert abs(np.trapezoid(np.trapezoid(values, units, axis=1), x0) - 1.0) < 1e-4
    # ... and d = 10 by importance sampling from a wide Gaussian that knows nothing of the funnel.
    target, generator = Funnel(dimension=10), np.random.default_rng(0)
    scales = np.array([1.5] + [5.0] * 9)
    points = generator.standard_normal((400_000, 10)) * scales
    log_proposal = (-0.5 * np.sum((points / scales) ** 2, axis=1) - np.log(scales).sum()
                    - 5 * math.log(2 * math.pi))
    log_ratio = -ops.convert_to_numpy(target.energy(ops.convert_to_tensor(points, "float32")))
    estimate = np.mean(np.exp(log_ratio - log_proposal))
    assert abs(estimate - math.exp(target.log_normaliser)) < 0.05
    # The exact sampler agrees with the energy: x0 ~ N(0, 1), E[x_i^2] = E[e^x0] = e^0.5.
    exact = target.sample(200_000, generator)
    assert abs(exact[:, 0].var() - 1.0) < 0.02
    assert abs(np.mean(exact[:, 1:] ** 2) / math.exp(0.5) - 1.0) < 0.05


@pytest.mark.slow
def test_quick_run_estimates_the_mixture_log_normaliser(tmp_path):
    figure = tmp_path / "pis.png"
    results = load_benchmark().main(["--quick", "--targets", "mixture_1d", "--drifts", "f",
                                     "--figure", str(figure)])
    assert figure.is_file()
    target, (run,) = results["mixture_1d", "f"]
    # PIS-NN after 30 iterations: ESS / n was 0.68 on 1000 trajectories, so the estimate's s.d.
    # is about sqrt((1 / 0.68 - 1) / 1000) = 0.022 (the run saw +0.020): 0.08 is over 3.5 s.d.
    assert abs(run["log_z"] - target.log_normaliser) < 0.08
    # The lower bound is one: below log Z, and below the importance estimate.
    assert run["lower_bound"] < target.log_normaliser + 0.02
    assert run["lower_bound"] <= run["log_z"]
    assert run["label"] == "mode weights" and abs(run["statistic"].sum() - 1.0) < 1e-9

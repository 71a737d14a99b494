"""benchmarks/pes_paper/ridge_penalty.py --quick: PES tunes the L2 penalty towards the grid's
optimum from both sides."""


import numpy as np
import pytest
from conftest import load_script
from keras import ops

from l2o.systems.ridge import diabetes_split, ridge_system


def load_benchmark():
    return load_script("benchmarks/pes_paper", "ridge_penalty")


def test_inner_run_is_gradient_descent_on_the_penalised_training_loss():
    x_train, y_train, x_val, y_val = diabetes_split()
    assert x_train.shape == (60, 65) and x_val.shape == (382, 65)
    np.testing.assert_allclose(x_train.mean(0), 0.0, atol=1e-5)
    system = ridge_system((x_train, y_train, x_val, y_val), learning_rate=0.001, horizon=3)
    theta = 0.5
    weights = np.zeros(65)
    expected = 0.0
    for _ in range(3):
        gradient = 2 * x_train.T @ (x_train @ weights - y_train) / 60 + 2 * np.exp(theta) * weights
        weights = weights - 0.001 * gradient
        expected += np.mean((x_val @ weights - y_val) ** 2)
    value = ops.convert_to_numpy(system.meta_objective(ops.convert_to_tensor([[theta]])))[0]
    np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.mark.slow
def test_quick_pes_moves_towards_the_grid_optimum_from_both_sides(tmp_path):
    figure = tmp_path / "pes_uci.png"
    report = load_benchmark().main(["--quick", "--figure", str(figure)])
    assert figure.is_file()
    optimum = report["optimum"]
    _, values = report["grid"]
    assert -3.0 < optimum < 3.0  # inside the starts, so that they approach it from both sides
    assert values[np.argmin(values)] < values[0] and values[np.argmin(values)] < values[-1]
    for start in (3.0, -3.0):
        path = report["paths"]["pes", start]
        assert abs(report["final"]["pes", start] - optimum) < 0.5 * abs(start - optimum)
        assert np.all(np.isfinite(path))

"""benchmarks/pes_paper/mnist_lr_schedule.py --quick: the grid against points evaluated one at a time, the
paths' lengths, and the direction every estimator takes where the answer is known."""

import json

import numpy as np
import pytest
from conftest import load_script


def load_benchmark():
    return load_script("benchmarks/pes_paper", "mnist_lr_schedule")


@pytest.mark.slow
def test_quick_grid_paths_and_direction(tmp_path, mnist_folder):
    benchmark = load_benchmark()
    figure = tmp_path / "figure.png"
    # One objective keeps the test fast; val_sum_acc's particles are tested in
    # test_meta_objectives.py, and the benchmark's full run draws both.
    assert benchmark.main(["--quick", "--objectives", "train_sum_loss", "--out", str(tmp_path),
                           "--figure", str(figure)]) == 0
    assert figure.is_file()
    report = json.loads((tmp_path / "pes_schedule.json").read_text())
    args = benchmark.parse(["--quick"])
    results = report["results"]
    assert list(results) == ["train_sum_loss"]

    for result in results.values():
        runs = result["runs"]
        assert [(run["estimator"], run["K"]) for run in runs] == [
            (estimator, truncation) for truncation in args.truncations
            for estimator in ("es", "pes")]
        for run in runs:
            assert np.shape(run["path"]) == (args.iterations + 1, 2)
            np.testing.assert_allclose(run["path"][0], benchmark.START, rtol=1e-6)

    # The grid's row-major layout against points scored alone (a batch of one): its best,
    # its worst and an off-diagonal point, so that a transposed grid would fail.
    result = results["train_sum_loss"]
    grid = np.asarray(result["grid"], np.float64)
    thetas = benchmark.grid_thetas(args.grid)
    system = benchmark.inner_problem("train_sum_loss", args)
    rows = [result["grid_best_index"], int(np.nanargmax(grid)), 1 * args.grid + 4]
    alone = [system.meta_objective(thetas[row][None], args.horizon, args.segment)[0]
             for row in rows]
    np.testing.assert_allclose(alone, grid.ravel()[rows], rtol=1e-4)
    assert grid.ravel()[result["grid_best_index"]] == np.nanmin(grid) == result["grid_best"]
    # From lr0 = 0.003 decaying 2^30-fold over the horizon the network barely trains: a
    # larger, slower-decaying rate lowers the sum of training losses (the grid agrees), so
    # every estimator must raise lr0 and lower p.
    best_log_rate, best_log_power = thetas[result["grid_best_index"]]
    assert best_log_rate > benchmark.START[0] and best_log_power < benchmark.START[1]
    for run in result["runs"]:
        log_rate, log_power = run["path"][-1]
        assert log_rate > benchmark.START[0] and log_power < benchmark.START[1], run

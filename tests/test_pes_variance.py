"""benchmarks/pes_paper/variance.py --quick: PES's variance on a toy character LSTM, against the
exact gradient and the linear-regime theory of the benchmark's docstring."""


import numpy as np
import pytest
from conftest import load_script


def load_benchmark():
    return load_script("benchmarks/pes_paper", "variance")


@pytest.mark.slow
def test_quick_variances_follow_the_theory_and_the_mean_is_the_gradient(tmp_path):
    benchmark = load_benchmark()
    figure = tmp_path / "variance.png"
    results = benchmark.main(["--quick", "--scenarios", "random", "repeat",
                              "--figure", str(figure)])
    assert figure.is_file()
    for scenario, result in results.items():
        # PES summed over the unrolls is unbiased for the gradient of their total loss
        # (sigma small: the smoothed gradient is the plain one).
        assert abs(result["z"]) < 4.0, scenario
        for name in benchmark.ESTIMATES:
            ratio = result["measured"][name] / result["predicted"][name]
            assert 0.7 < np.mean(ratio) < 1.4, (scenario, name, ratio)
        # One truncation: PES, its sum and both ESs are the same estimator.
        first = [result["predicted"][name][0] for name in benchmark.ESTIMATES]
        assert np.allclose(first, first[0], rtol=1e-6), scenario
        # PES at unroll t carries t perturbations: its variance grows with t.
        assert np.all(np.diff(result["predicted"]["pes"]) > 0), scenario
    # Correlated unrolls (the same chunk repeated) favour PES's fresh noise per unroll over
    # ES's one shared perturbation; uncorrelated ones (random characters) favour ES.
    last = {scenario: result["measured"]["pes_sum"][-1] / result["measured"]["es_full"][-1]
            for scenario, result in results.items()}
    assert last["repeat"] < 1.0 < last["random"], last

"""benchmarks/pes_paper/many_hyperparameters.py --quick: its bookkeeping, and F by hand for a
network whose every layer is switched off (its parameters never move)."""


import numpy as np
import pytest
from conftest import load_script


def load_benchmark():
    return load_script("benchmarks/pes_paper", "many_hyperparameters")


@pytest.mark.slow
def test_quick_run_and_frozen_network_by_hand(tmp_path, capsys):
    benchmark = load_benchmark()
    results = benchmark.main(["--quick", "--figure", str(tmp_path / "many.png")])
    args = benchmark.parse(["--quick"])
    output = capsys.readouterr().out
    assert (tmp_path / "many.png").exists()
    for method in ("random search", "ES", "PES"):
        assert f"| {method} |" in output
        for run in results[method]:
            assert np.all(np.isfinite(run["best"]))
            assert np.all(np.diff(run["best"]) <= 0)
    # ES also carries its unperturbed state: N + 1 copies a truncation.
    assert results["ES"][0]["compute"][-1] == args.iterations * 11 * benchmark.K
    assert results["PES"][0]["compute"][-1] == args.iterations * 10 * benchmark.K
    search = results["random search"][0]
    assert search["best"][-1] == search["points"].min()

    truncations, horizon = results["truncations"], args.horizon
    weights = {name: np.zeros(5, np.float32) for name in truncations.names}
    weights["update_mask_logit"][:] = -0.5  # every layer frozen
    frozen = truncations.flatten(weights)
    seed = benchmark.EVAL_SEEDS[0]
    params = truncations.init_state(seed)["params"]
    held_out = truncations.objective.held_out(seed, 1, horizon)
    by_hand = sum(float(truncations.problem.loss(params, (held_out[0][t], held_out[1][t])))
                  for t in range(horizon))
    value = benchmark.meta_objective(truncations, frozen[None], horizon, [seed])[0]
    np.testing.assert_allclose(value, by_hand, rtol=1e-5)
    # A learning rate of e^6 with every layer trained diverges: counted at the cap.
    weights["update_mask_logit"][:], weights["log_learning_rate"][:] = 1.0, 6.0
    wild = benchmark.meta_objective(truncations, truncations.flatten(weights)[None], horizon,
                                    [seed])[0]
    assert wild == benchmark.DIVERGED_STEP_LOSS * horizon

"""Swimmer as ES/PES particles (l2o/systems/control.py) and
benchmarks/pes_paper/swimmer_control.py --quick."""

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from conftest import load_script

from l2o.systems.control import LinearPolicyParticles


def load_benchmark():
    return load_script("benchmarks/pes_paper", "swimmer_control")


def test_saved_state_steps_like_the_original():
    system = LinearPolicyParticles()
    policy = np.random.default_rng(0).normal(scale=0.3, size=(2, 8))
    observation = system.load(system.initial_state(seed=3))
    for _ in range(50):
        observation, _ = system.advance(policy, observation)
    saved = system.save(observation)
    expected = system.advance(policy, observation)
    for _ in range(30):  # the simulator moves on elsewhere before the state is loaded again
        system.advance(policy, observation)
    observation, reward = system.advance(policy, system.load(saved))
    np.testing.assert_array_equal(observation, expected[0])
    assert reward == expected[1]


def test_two_truncations_continue_one_unroll():
    system = LinearPolicyParticles()
    thetas = np.random.default_rng(1).normal(scale=0.3, size=(3, 16))
    starts = [system.initial_state(seed) for seed in (1, 2, 2)]
    states = {name: np.stack([start[name] for start in starts]) for name in starts[0]}
    whole, whole_states = system.unroll(thetas, states, np.zeros(3), 60)
    first, middle = system.unroll(thetas, states, np.zeros(3), 25)
    second, split_states = system.unroll(thetas, middle, np.full(3, 25), 35)
    np.testing.assert_allclose(first + second, whole, rtol=1e-12)
    np.testing.assert_array_equal(split_states["qpos"], whole_states["qpos"])
    assert system.simulated_steps == 3 * 60 * 2
    assert whole[1] != whole[2]  # different policies from the same start differ


@pytest.mark.slow
def test_quick_run_spends_the_budget_and_scores_every_method(tmp_path):
    figure = tmp_path / "pes_control.png"
    curves = load_benchmark().main(["--quick", "--figure", str(figure)])
    assert figure.is_file()
    assert set(curves) == {"es_full", "es_truncated", "pes"}
    for runs in curves.values():
        steps, rewards = runs[0][:, 0], runs[0][:, 1]
        assert steps[0] == 0 and steps[-1] >= 10_000 and np.all(np.diff(steps) > 0)
        assert np.all(np.isfinite(rewards))
        # Every run starts from the zero policy, which barely moves the swimmer.
        assert abs(rewards[0]) < 5.0
    # PES runs 20 particles x K = 10 steps per truncation; truncated ES one more copy.
    assert np.all(curves["pes"][0][1:, 0].astype(int) % 200 == 0)
    assert np.all(curves["es_truncated"][0][1:, 0].astype(int) % 210 == 0)

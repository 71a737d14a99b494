"""examples/mgrl_cartpole.py: the meta-gradient with respect to the discount, through an online
window's MetaAdam steps, against central finite differences (float64); and its --quick run."""

import importlib.util
import os
import sys

import numpy as np
import pytest
from conftest import ROOT
from keras import ops


def load_example(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the example puts its folder first
    path = os.path.join(ROOT, "examples", "mgrl_cartpole.py")
    spec = importlib.util.spec_from_file_location("mgrl_cartpole", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_meta_gradient_matches_finite_differences(monkeypatch):
    example = load_example(monkeypatch)
    agent = example.Agent(hidden=8, dtype="float64")
    agent.reset(0.9, seed=3)
    environments = example.CartPoles(count=4, max_steps=500, seed=3)
    actions = np.random.default_rng(4)
    rollouts = [example.collect(agent, environments, agent.actor.trainable_variables, 6, actions)
                for _ in range(3)]
    # A first window leaves Adam moments behind: through Adam's first step (m / sqrt(v) is
    # sign(g)) the meta-gradient is nearly zero, and the comparison would be empty.
    example.mgrl_window(agent, rollouts[0], lambda _: rollouts[1], 0.99)
    variables = agent.actor.trainable_variables + agent.critic.trainable_variables
    weights = [ops.convert_to_numpy(v) for v in variables]
    moments = agent.actor_optimizer.online_states, agent.critic_optimizer.online_states
    logit = float(agent.gamma_logit)

    def window_at(gamma_logit):
        """The next window from the saved weights and moments: the window and its outer loss."""
        for variable, value in zip(variables, weights):
            variable.assign(value)
        agent.actor_optimizer.online_states, agent.critic_optimizer.online_states = moments
        agent.gamma_logit.assign(gamma_logit)
        window, outer, _ = example.mgrl_window(agent, rollouts[1], lambda _: rollouts[2], 0.99)
        return window, outer

    window, outer = window_at(logit)
    (meta_gradient,) = window.gradient(outer, [agent.gamma_logit])
    critic_after = [ops.convert_to_numpy(v) for v in agent.critic.trainable_variables]

    def policy_loss_after(gamma_logit):
        # The outer loss's advantages carry no gradient: hold the critic they come from at
        # its unperturbed update, so that only the actor's update moves with gamma.
        window_at(gamma_logit)
        return float(agent.policy_gradient_loss(agent.actor.trainable_variables, critic_after,
                                                rollouts[2], ops.convert_to_tensor(0.99, "float64")))

    step = 1e-5
    difference = (policy_loss_after(logit + step) - policy_loss_after(logit - step)) / (2 * step)
    assert abs(float(meta_gradient)) > 1e-6  # a comparison of two zeros would prove nothing
    np.testing.assert_allclose(float(meta_gradient), difference, rtol=1e-6)
    # The online window moved the weights: the outer loss saw the inner step.
    assert max(np.abs(ops.convert_to_numpy(v) - w).max() for v, w in zip(variables, weights)) > 0


@pytest.mark.slow
def test_quick_run(monkeypatch, capsys):
    example = load_example(monkeypatch)
    results = example.main(["--quick"])
    output = capsys.readouterr().out
    assert "| agent | mean ± s.e. |" in output and "| fixed gamma 0.9 |" in output
    (meta_label,) = [label for label in results if label.startswith("MGRL")]
    for label, runs in results.items():
        assert len(runs) == 2
        for run in runs:
            gammas = run["gammas"]
            assert np.all((gammas > 0) & (gammas < 1)) and gammas[0] == np.float32(0.9)
            assert run["episodes"] and np.isfinite(run["score"])
            if label == meta_label:
                assert np.ptp(gammas) > 0  # the meta-gradient moved it
            else:
                assert np.all(gammas == gammas[0])
    # Same seeds: same starting weights, cart-pole starts and action draws, so both agents'
    # first rollout, made before any update, ends the same episodes.
    first = [results[label][0]["episodes"] for label in results]
    before_update = 8 * 8  # the quick run's N cart-poles x T steps
    assert len({tuple(e for e in episodes if e[0] <= before_update) for episodes in first}) == 1

"""A MuJoCo environment (gymnasium) as the unrolled system of ES and PES, with a linear policy.

The policy acts a_t = W o_t (W: [actions, observations], theta = W flattened;
MuJoCo clips a_t to the actuators' range), and a truncation of K steps from
step t0 scores the negated return, L = -(r_{t0+1} + ... + r_{t0+K}): ES and
PES minimise it. A particle's state is the simulator's (qpos, qvel) and the
last observation, arrays with a leading particle axis, so that
``l2o.estimators.es``'s populations keep, copy and restart particles as they
do any other state: ``unroll`` loads each particle into one simulator
(``set_state``), steps it K times and reads it back. The environment is
numpy and not differentiable, so particles run one after the other in that
call. Episodes end only at the populations' horizon (Swimmer has no early
termination; an environment that terminates is refused at its first
terminal step rather than silently continued).

Needs the optional ``control`` extra (``pip install "l2o[control]"``: gymnasium
with MuJoCo); ``benchmarks/pes_paper/swimmer_control.py`` uses it on Swimmer.
"""

import numpy as np
from keras import ops


class LinearPolicyParticles:
    """``unroll`` and ``initial_state`` of ``l2o.estimators.es`` on gymnasium's ``env_id``.

    ``simulated_steps`` counts every environment step taken through ``unroll``;
    ``losses`` holds the last call's per-particle losses (for normalising an
    update by their spread).
    """

    def __init__(self, env_id="Swimmer-v5"):
        import gymnasium

        # Unwrapped: the populations, not gymnasium's time limit, decide where episodes end.
        self.env = gymnasium.make(env_id).unwrapped
        self.env_id = env_id
        self.observation_size = self.env.observation_space.shape[0]
        self.action_size = self.env.action_space.shape[0]
        self.simulated_steps, self.losses = 0, None

    @property
    def parameter_count(self):
        return self.action_size * self.observation_size

    def initial_state(self, seed=None, dtype="float64"):
        """A fresh episode's state, its start drawn by the environment's reset from ``seed``."""
        observation, _ = self.env.reset(seed=None if seed is None else int(seed))
        return {"qpos": self.env.data.qpos.astype(dtype), "qvel": self.env.data.qvel.astype(dtype),
                "observation": np.asarray(observation, dtype)}

    def load(self, state):
        """Puts one particle's state into the simulator; returns its observation."""
        self.env.set_state(np.asarray(state["qpos"], np.float64),
                           np.asarray(state["qvel"], np.float64))
        return np.asarray(state["observation"], np.float64)

    def save(self, observation):
        return {"qpos": self.env.data.qpos.copy(), "qvel": self.env.data.qvel.copy(),
                "observation": np.asarray(observation, np.float64)}

    def advance(self, weights, observation):
        """``(observation, reward)`` after one step of the loaded simulator under ``weights``."""
        observation, reward, terminated, _, _ = self.env.step(weights @ observation)
        if terminated:
            raise NotImplementedError(
                f"{self.env_id} terminated an episode early; LinearPolicyParticles runs "
                f"episodes of a fixed horizon only")
        return observation, reward

    def unroll(self, thetas, states, steps, length):
        """``(losses [P], states)``: each particle's negated return over ``length`` steps."""
        weights = np.asarray(ops.convert_to_numpy(thetas), np.float64).reshape(
            -1, self.action_size, self.observation_size)
        # A state of one copy (leading axis 1) starts every particle: truncated ES.
        states = {name: np.broadcast_to(np.asarray(ops.convert_to_numpy(value)),
                                        (len(weights),) + np.shape(value)[1:])
                  for name, value in states.items()}
        returns, finals = np.zeros(len(weights)), []
        for particle, policy in enumerate(weights):
            observation = self.load({name: value[particle] for name, value in states.items()})
            for _ in range(length):
                observation, reward = self.advance(policy, observation)
                returns[particle] += reward
            finals.append(self.save(observation))
        self.simulated_steps += len(weights) * length
        self.losses = -returns
        return self.losses, {name: np.stack([final[name] for final in finals])
                             for name in finals[0]}

    def mean_return(self, theta, seeds, horizon):
        """The mean return of the policy ``theta`` over episodes of ``horizon`` steps, one
        from each of ``seeds``' starts (these steps are not counted in ``simulated_steps``)."""
        starts = [self.initial_state(seed) for seed in seeds]
        states = {name: np.stack([start[name] for start in starts]) for name in starts[0]}
        counted = self.simulated_steps
        losses, _ = self.unroll(np.repeat(np.asarray(theta)[None], len(seeds), axis=0), states,
                                np.zeros(len(seeds)), horizon)
        self.simulated_steps = counted
        return float(-np.mean(losses))

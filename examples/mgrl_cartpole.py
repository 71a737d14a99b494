"""Meta-gradient RL (Xu, van Hasselt and Silver 2018): an actor-critic that learns its discount.

    python -m examples.mgrl_cartpole [--seeds 3] [--updates 400] [--quick]

Meta-Optim's MGRL example on unmodified Keras models: an actor and a critic
(``keras.Sequential`` MLPs), each stepped by ``MetaAdam`` inside
``SlidingWindow(offline=False)``, and the discount gamma a meta-parameter that
Adam moves by ``window.gradient`` of an outer loss, through the inner steps.

The environment is es_cartpole.py's cart-pole (Barto, Sutton and Anderson
1983; reward 1 per step, failure past 12 degrees or 2.4 m, episodes capped at
``--max-steps``), N copies at once, each reset when its episode ends. An
update takes a rollout tau of T steps from the N copies, states s_t, actions
a_t, rewards r_t, c_t = 0 where an episode ended at step t and 1 elsewhere
(a capped episode counts as ended), and the state s_T after it:

    G_t(gamma) = r_t + gamma c_t G_{t+1}(gamma),   G_T = v(s_T)  (no gradient)
    critic loss = mean_t (G_t(gamma) - v(s_t))^2 / 2
    actor loss  = -mean_t [(G_t(gamma) - v(s_t)) log pi(a_t | s_t) + beta H(pi(. | s_t))]

(the advantage carries no gradient to v, it does carry gamma's).
``MetaAdam`` steps the critic on its loss and the actor on its, giving
theta'(gamma). MGRL's meta-objective is the policy-gradient loss of the
updated actor on the next rollout tau', sampled by theta', with a fixed
reference discount gamma' (``--reference-gamma``) in place of gamma:

    outer loss = -mean_t (G'_t(gamma') - v(s'_t)) log pi_theta'(a'_t | s'_t)

(no entropy term; G' and v carry no gradient), so d outer / d gamma flows
only through the actor's inner step, including d G(gamma) / d gamma inside
its gradient. Gamma = sigmoid(eta) stays in (0, 1); Adam (``--meta-lr``)
steps eta. The critic's loss is left out of the outer loss: measured with
gamma' it would mostly pull gamma towards gamma'. As in MGRL, tau' is also the
next update's rollout, and the window is online: the actor and critic keep
theta' and Adam's moments for the next window, constants to it, so each
meta-gradient sees one inner step (the paper's mu = 0 trace).

The baselines are the same agent with gamma fixed (``--fixed-gammas``, the
meta-learner's start among them): the same code, the same initial weights,
the same environment and action-sampling seeds and the same number of
environment steps. An agent is scored by the mean return of the episodes that
ended in the last quarter of its training steps.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from examples.es_cartpole import cartpole_step, fallen, initial_states
from l2o import backend
from l2o.differentiable import MetaAdam, MetaModel, SlidingWindow

SCORED_FRACTION = 0.25


class CartPoles:
    """``count`` cart-poles stepped together, each reset (from ``seed``'s stream) when it ends.

    Every step draws ``count`` fresh starts whether or not they are used, so
    two agents with the same seed see the same stream of starts.
    """

    def __init__(self, count, max_steps, seed):
        self.generator = np.random.default_rng(seed)
        self.states = initial_states(self.generator, count)
        self.lengths = np.zeros(count, int)
        self.max_steps = max_steps
        self.steps = 0
        self.episodes = []  # (environment steps taken when it ended, its return)

    def step(self, push_right):
        """Rewards [count] and continues [count] (0 where an episode ended)."""
        moved = cartpole_step(self.states, push_right)
        self.lengths += 1
        self.steps += len(self.lengths)
        ended = fallen(moved) | (self.lengths >= self.max_steps)
        self.episodes += [(self.steps, int(length)) for length in self.lengths[ended]]
        self.lengths[ended] = 0
        self.states = np.where(ended[:, None], initial_states(self.generator, len(ended)), moved)
        return np.ones(len(ended)), (~ended).astype(float)


def mlp(hidden, outputs, dtype, name):
    return keras.Sequential([keras.Input((4,), dtype=dtype),
                             keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
                             keras.layers.Dense(outputs, dtype=dtype)], name=name)


class Agent:
    """Actor (two logits), critic (a value), their MetaAdam steps, and the discount's logit eta.

    The losses are compiled functions of the nets' current weights
    (``net.weights``: the window's tensors inside one), so that the eager
    window records one operation per loss instead of every layer's. One agent
    serves every run (``reset``), so that they are traced once.
    """

    def __init__(self, hidden=32, actor_lr=3e-3, critic_lr=1e-2, entropy_cost=0.01,
                 dtype="float32"):
        self.hidden, self.entropy_cost, self.dtype = hidden, entropy_cost, dtype
        self.actor, self.critic = mlp(hidden, 2, dtype, "actor"), mlp(hidden, 1, dtype, "critic")
        self.actor_net, self.critic_net = MetaModel(self.actor), MetaModel(self.critic)
        # eps_root keeps Adam's square root differentiable where a gradient is exactly 0.
        self.actor_optimizer = MetaAdam(self.actor_net, learning_rate=actor_lr, eps_root=1e-8)
        self.critic_optimizer = MetaAdam(self.critic_net, learning_rate=critic_lr, eps_root=1e-8)
        self.gamma_logit = keras.Variable(0.0, dtype=dtype, name="gamma_logit")
        self.logits = backend.compile_fn(self._logits)
        self._inner_losses = backend.compile_fn(self._actor_and_critic_losses)
        self.policy_gradient_loss = backend.compile_fn(self._policy_gradient_loss)

    def reset(self, gamma, seed):
        """Fresh weights drawn from ``seed``, fresh Adam moments, and the discount ``gamma``."""
        keras.utils.set_random_seed(seed)
        for model, outputs in ((self.actor, 2), (self.critic, 1)):
            fresh = mlp(self.hidden, outputs, self.dtype, f"fresh_{model.name}")
            for variable, value in zip(model.trainable_variables, fresh.trainable_variables):
                variable.assign(value)
        self.actor_optimizer.online_states = self.critic_optimizer.online_states = None
        self.gamma_logit.assign(np.log(gamma / (1 - gamma)))

    @property
    def gamma(self):
        return ops.sigmoid(self.gamma_logit)

    def inner_losses(self, rollout):
        """The actor's and the critic's losses on ``rollout`` with the agent's discount."""
        return self._inner_losses(self.actor_net.weights, self.critic_net.weights, rollout,
                                  self.gamma)

    def meta_objective(self, rollout, reference_gamma):
        """MGRL's outer loss: the current actor's policy-gradient loss with gamma'."""
        return self.policy_gradient_loss(self.actor_net.weights, self.critic_net.weights, rollout,
                                         ops.convert_to_tensor(reference_gamma, self.dtype))

    def _logits(self, actor_weights, states):
        return self.actor.stateless_call(actor_weights, [], states)[0]

    def _terms(self, actor_weights, critic_weights, rollout, gamma):
        """Returns, values, G - v (without v's gradient), log pi(a_t|s_t), all [T, N]; log pi."""
        length, count = ops.shape(rollout["actions"])
        states = ops.reshape(rollout["states"], (length * count, 4))
        values = ops.reshape(self.critic.stateless_call(critic_weights, [], states)[0],
                             (length, count))
        bootstrap = ops.stop_gradient(
            self.critic.stateless_call(critic_weights, [], rollout["last_states"])[0][:, 0])
        returns = discounted_returns(rollout["rewards"], rollout["continues"], bootstrap, gamma)
        log_policy = ops.reshape(
            ops.log_softmax(self._logits(actor_weights, states)),
            (length, count, 2))
        chosen = ops.take_along_axis(log_policy, rollout["actions"][..., None], axis=-1)[..., 0]
        return returns, values, returns - ops.stop_gradient(values), chosen, log_policy

    def _actor_and_critic_losses(self, actor_weights, critic_weights, rollout, gamma):
        returns, values, advantages, chosen, log_policy = self._terms(
            actor_weights, critic_weights, rollout, gamma)
        entropy = -ops.sum(ops.exp(log_policy) * log_policy, axis=-1)
        actor_loss = -ops.mean(advantages * chosen + self.entropy_cost * entropy)
        critic_loss = 0.5 * ops.mean(ops.square(returns - values))
        return actor_loss, critic_loss

    def _policy_gradient_loss(self, actor_weights, critic_weights, rollout, reference_gamma):
        """-mean (G'(gamma') - v) log pi(a|s), the advantage without gradient."""
        _, _, advantages, chosen, _ = self._terms(actor_weights, critic_weights, rollout,
                                                  reference_gamma)
        return -ops.mean(ops.stop_gradient(advantages) * chosen)


def collect(agent, environments, actor_weights, length, generator):
    """A rollout of ``length`` steps sampled by the actor with ``actor_weights``.

    ``{"states" [T, N, 4], "actions" [T, N], "rewards" [T, N], "continues"
    [T, N], "last_states" [N, 4]}`` as numpy arrays: data, constant to any tape.
    """
    weights = [ops.convert_to_numpy(w) for w in actor_weights]
    steps = {"states": [], "actions": [], "rewards": [], "continues": []}
    for _ in range(length):
        states = environments.states.astype(agent.dtype)
        logits = ops.convert_to_numpy(agent.logits(weights, states))
        push_right_probability = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
        actions = generator.random(len(states)) < push_right_probability
        rewards, continues = environments.step(actions)
        for key, value in zip(steps, (states, actions.astype(np.int32), rewards, continues)):
            steps[key].append(value)
    rollout = {key: np.stack(values) for key, values in steps.items()}
    rollout["last_states"] = environments.states.astype(agent.dtype)
    for key in ("rewards", "continues"):
        rollout[key] = rollout[key].astype(agent.dtype)
    return rollout


def discounted_returns(rewards, continues, bootstrap, gamma):
    """G_t = r_t + gamma c_t G_{t+1} with G_T = ``bootstrap``, for every t of [T, N] arrays."""
    returns, following = [], bootstrap
    for step in reversed(range(rewards.shape[0])):
        following = rewards[step] + gamma * continues[step] * following
        returns.append(following)
    return ops.stack(returns[::-1])


def mgrl_window(agent, rollout, next_rollout, reference_gamma):
    """One online window: inner steps on ``rollout``, then the outer loss on the next rollout.

    ``next_rollout(actor weights)`` returns it (sampled by the updated actor,
    or given). Returns the window, the outer loss, and the next rollout.
    """
    with SlidingWindow(offline=False) as window:
        actor_loss, critic_loss = agent.inner_losses(rollout)
        agent.critic_optimizer.step(critic_loss)
        agent.actor_optimizer.step(actor_loss)
        following = next_rollout(agent.actor_net.weights)
        outer = agent.meta_objective(following, reference_gamma)
    return window, outer, following


def train(agent, gamma, meta_learning, seed, args):
    """Returns gamma after each update and the ``(env steps, return)`` of every ended episode."""
    agent.reset(gamma, seed)
    environments = CartPoles(args.envs, args.max_steps, seed)
    actions = np.random.default_rng(seed + 10_000)
    meta_optimizer = keras.optimizers.Adam(args.meta_lr)

    def sample(weights):
        return collect(agent, environments, weights, args.rollout, actions)

    rollout = sample(agent.actor.trainable_variables)
    gammas = [float(agent.gamma)]
    for _ in range(args.updates):
        window, outer, rollout = mgrl_window(agent, rollout, sample, args.reference_gamma)
        if meta_learning:
            variables = [agent.gamma_logit]
            meta_optimizer.apply(window.gradient(outer, variables), variables)
        gammas.append(float(agent.gamma))
    return np.array(gammas), environments.episodes


def score(episodes, total_steps):
    """Mean return of the episodes that ended in the last quarter of the steps (NaN if none)."""
    late = [value for steps, value in episodes if steps > (1 - SCORED_FRACTION) * total_steps]
    return float(np.mean(late)) if late else float("nan")


def print_table(results, args):
    checkpoints = [args.updates * k // 4 for k in range(5)]
    print(f"\nmean return of episodes ending in the last {SCORED_FRACTION:.0%} of "
          f"{args.updates * args.rollout * args.envs} environment steps (max {args.max_steps}), "
          f"per seed, and gamma after updates {', '.join(map(str, checkpoints))} (mean over seeds):")
    seeds = " | ".join(f"seed {seed}" for seed in range(args.seeds))
    print(f"| agent | mean ± s.e. | {seeds} | gamma trajectory |")
    print("| --- | --- |" + " --- |" * args.seeds + " --- |")
    for label, runs in results.items():
        scores = np.array([run["score"] for run in runs])
        error = scores.std(ddof=1) / np.sqrt(len(scores)) if len(scores) > 1 else float("nan")
        trajectory = np.mean([run["gammas"] for run in runs], axis=0)
        path = " → ".join(f"{trajectory[step]:.3f}" for step in checkpoints)
        cells = " | ".join(f"{value:.1f}" for value in scores)
        print(f"| {label} | {scores.mean():.1f} ± {error:.1f} | {cells} | {path} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--initial-gamma", type=float, default=0.9,
                        help="the meta-learner's starting discount")
    parser.add_argument("--fixed-gammas", type=float, nargs="+", default=[0.9, 0.99],
                        help="discounts of the fixed-discount baselines")
    parser.add_argument("--reference-gamma", type=float, default=0.99,
                        help="gamma' of the outer loss")
    parser.add_argument("--meta-lr", type=float, default=0.05, help="Adam's rate on logit(gamma)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="seeds 0, 1, ...: weights, environment starts, actions")
    parser.add_argument("--updates", type=int, default=400, help="inner steps per agent")
    parser.add_argument("--envs", type=int, default=16, help="N: cart-poles stepped together")
    parser.add_argument("--rollout", type=int, default=16, help="T: steps per rollout")
    parser.add_argument("--max-steps", type=int, default=500, help="episode cap")
    parser.add_argument("--hidden", type=int, default=32, help="tanh units of actor and critic")
    parser.add_argument("--actor-lr", type=float, default=3e-3, help="the actor's MetaAdam rate")
    parser.add_argument("--critic-lr", type=float, default=1e-2,
                        help="the critic's MetaAdam rate")
    parser.add_argument("--entropy-cost", type=float, default=0.01, help="beta")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 seeds, 10 updates of 8 x 8 steps, one baseline")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.updates, args.envs, args.rollout = 2, 10, 8, 8
        args.fixed_gammas = [args.initial_gamma]
    for name in ("seeds", "updates", "envs", "rollout", "max_steps", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not all(0 < g < 1 for g in (args.initial_gamma, *args.fixed_gammas)):
        parser.error("discounts must be in (0, 1)")
    if not 0 <= args.reference_gamma <= 1:
        parser.error("--reference-gamma must be in [0, 1]")

    agents = {f"MGRL, gamma from {args.initial_gamma:g} (gamma' {args.reference_gamma:g})":
              (args.initial_gamma, True)}
    agents.update({f"fixed gamma {gamma:g}": (gamma, False) for gamma in args.fixed_gammas})
    total_steps = args.updates * args.rollout * args.envs
    agent = Agent(args.hidden, args.actor_lr, args.critic_lr, args.entropy_cost)
    results = {}
    for label, (gamma, meta_learning) in agents.items():
        results[label] = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            gammas, episodes = train(agent, gamma, meta_learning, seed, args)
            results[label].append({"gammas": gammas, "score": score(episodes, total_steps),
                                   "episodes": episodes})
            print(f"{label}, seed {seed}: score {results[label][-1]['score']:.1f}, "
                  f"gamma {gammas[-1]:.4f}, {len(episodes)} episodes "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    print_table(results, args)
    return results


if __name__ == "__main__":
    main()

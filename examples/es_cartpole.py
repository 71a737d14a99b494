"""Train a cart-pole balancing policy (a small Keras MLP) by maximising episode reward with ES.

The reward is the number of steps the pole stays up (at most ``--max-steps``), which has no
gradient with respect to the policy's weights. The cart-pole is the classic one of Barto,
Sutton and Anderson (1983), simulated in numpy with the usual constants (Euler steps of
0.02 s, +-10 N pushes, failure past 12 degrees or 2.4 m) for many episodes at once.

    python -m examples.es_cartpole                     # all candidates in one batched rollout
    python -m examples.es_cartpole --n-workers 2       # one candidate at a time, Ray workers
    python -m examples.es_cartpole --quick             # the smoke test's tiny run
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from l2o import blackbox

GRAVITY, CART_MASS, POLE_MASS, POLE_HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
PUSH_FORCE, TIME_STEP = 10.0, 0.02
MAX_ANGLE, MAX_POSITION = 12 * np.pi / 180, 2.4


def cartpole_step(states, push_right):
    """Next states [..., 4] = (x, x_dot, angle, angle_dot) after one push per state."""
    x, x_dot, angle, angle_dot = np.moveaxis(states, -1, 0)
    force = np.where(push_right, PUSH_FORCE, -PUSH_FORCE)
    total_mass = CART_MASS + POLE_MASS
    cos, sin = np.cos(angle), np.sin(angle)
    common = (force + POLE_MASS * POLE_HALF_LENGTH * angle_dot ** 2 * sin) / total_mass
    angle_acc = (GRAVITY * sin - cos * common) / (
        POLE_HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos ** 2 / total_mass))
    x_acc = common - POLE_MASS * POLE_HALF_LENGTH * angle_acc * cos / total_mass
    return np.stack([x + TIME_STEP * x_dot, x_dot + TIME_STEP * x_acc,
                     angle + TIME_STEP * angle_dot, angle_dot + TIME_STEP * angle_acc], axis=-1)


def fallen(states):
    return (np.abs(states[..., 0]) > MAX_POSITION) | (np.abs(states[..., 2]) > MAX_ANGLE)


def initial_states(generator, episodes):
    return generator.uniform(-0.05, 0.05, (episodes, 4)).astype(np.float32)


def episode_lengths(model, stacked_weights, starts, max_steps):
    """Mean episode length [n] of each of n policies over the same ``starts`` [episodes, 4]."""
    count = len(stacked_weights[0])
    states = np.repeat(starts[None], count, axis=0)
    alive = np.ones(states.shape[:2], bool)
    lengths = np.zeros(states.shape[:2])
    for _ in range(max_steps):
        outputs = ops.convert_to_numpy(blackbox.batched_forward(
            model, stacked_weights, states.astype(np.float32), per_candidate_inputs=True))
        moved = cartpole_step(states, outputs[..., 0] > 0)
        lengths += alive
        alive &= ~fallen(moved)
        states = np.where(alive[..., None], moved, states)
        if not alive.any():
            break
    return lengths.mean(axis=1)


class BatchedReward:
    """Vectorised objective: every candidate's mean episode length from one batched rollout."""

    vectorized = True

    def __init__(self, model, max_steps):
        self.model, self.max_steps = model, max_steps

    def __call__(self, stacked_weights, starts):
        return episode_lengths(self.model, stacked_weights, starts, self.max_steps)


class Reward:
    """Per-candidate objective (for Ray workers): the model's mean episode length."""

    def __init__(self, max_steps):
        self.max_steps = max_steps

    def __call__(self, model, starts):
        return float(episode_lengths(model, current_weights(model), starts, self.max_steps)[0])


def current_weights(model):
    return [np.asarray(v.numpy())[None] for v in model.trainable_variables]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=8, help="hidden tanh units")
    parser.add_argument("--iterations", type=int, default=100, help="at most this many steps")
    parser.add_argument("--n-samples", type=int, default=20, help="candidates per step")
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=0.05, help="Adam's")
    parser.add_argument("--episodes", type=int, default=5,
                        help="episodes per candidate per step (same starts for all)")
    parser.add_argument("--max-steps", type=int, default=500, help="episode length cap")
    parser.add_argument("--test-episodes", type=int, default=100)
    parser.add_argument("--n-workers", type=int, default=1,
                        help="1: batched rollout of all candidates; more: Ray workers "
                             "(the distributed extra)")
    parser.add_argument("--report-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny run for the smoke test")
    args = parser.parse_args()
    if args.quick:
        args.max_steps, args.iterations, args.test_episodes = 100, 15, 20
        args.report_every = 3
    return args


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    policy = keras.Sequential([keras.Input((4,)),
                               keras.layers.Dense(args.hidden, activation="tanh"),
                               keras.layers.Dense(1)])
    objective = BatchedReward(policy, args.max_steps) if args.n_workers == 1 else Reward(
        args.max_steps)
    episode_generator = np.random.default_rng(args.seed + 1)
    test_starts = initial_states(np.random.default_rng(args.seed + 2), args.test_episodes)

    def test_lengths():
        return episode_lengths(policy, current_weights(policy), test_starts, args.max_steps)

    def report(stats):
        stats["test_length"] = float(test_lengths()[0])
        solved = stats["test_length"] >= args.max_steps
        if stats["iteration"] % args.report_every and not solved:
            return False
        print(f"iteration {stats['iteration']:3d}  mean candidate length "
              f"{stats['objective_mean'][0]:6.1f}  policy's mean test length "
              f"{stats['test_length']:6.1f}  {time.perf_counter() - start:6.1f} s", flush=True)
        return solved

    with blackbox.ESOptimizer(policy, objective, keras.optimizers.Adam(args.learning_rate),
                              sigma=args.sigma, n_samples=args.n_samples,
                              n_workers=args.n_workers, seed=args.seed) as optimizer:
        print("ES:", {k: v for k, v in optimizer.get_config().items()
                      if k != "base_optimizer"}, f"Adam lr {args.learning_rate}")
        print(f"initial mean test length {test_lengths()[0]:.1f} (max {args.max_steps})")
        start = time.perf_counter()
        optimizer.train(args.iterations,
                        samples=lambda _: initial_states(episode_generator, args.episodes),
                        callback=report, progress=False)
        elapsed = time.perf_counter() - start
    fresh = episode_lengths(policy, current_weights(policy),
                            initial_states(np.random.default_rng(args.seed + 3), 100),
                            args.max_steps)
    print(f"after {optimizer.iterations} iterations x {args.n_samples} candidates x "
          f"{args.episodes} episodes ({elapsed:.1f} s): mean length on 100 fresh episodes "
          f"{fresh[0]:.1f} (max {args.max_steps})")


if __name__ == "__main__":
    main()

"""Linear Swimmer policies by full-unroll ES, truncated ES and PES (Vicol et al. 2021, "Control").

    python -m benchmarks.pes_paper.swimmer_control [--budget 500000] [--seeds 3 5 7] [--quick]

MuJoCo Swimmer (gymnasium's Swimmer-v5; episodes of T = 1000 steps, no early
termination) with a linear policy a = W o (W: 2 x 8, from zero), driven as
the unrolled system of ``l2o.estimators.es`` through
``l2o.systems.control.LinearPolicyParticles``: a truncation's loss is its
negated return. The three settings of the paper's script (its ``--N 10``
counts antithetic pairs: 20 particles):

    full-unroll ES   TruncatedES, K = 1000 (= T), sigma 0.3, lr 0.3
    truncated ES     TruncatedES, K = 100,        sigma 0.1, lr 0.1
    PES              PES,         K = 100,        sigma 0.3, lr 0.1

Each takes plain gradient steps normalised by the spread of the particles'
losses (the paper's ``--divide_by_variance``): with the population's estimate
g = sum_i L_i xi_i / (P sigma^2) (P particles, xi_i the accumulated
perturbations), theta <- theta - lr * g * 2 sigma / std_i(L_i), which is the
paper's lr * sum_i R_i u_i / (N_pairs std(R)) with unit-normal directions u_i.
Each run stops after ``--budget`` environment steps (all particles' steps,
the unperturbed copy of truncated ES included) and is scored every
``--eval-every`` steps by the mean return of the current policy on
``--eval-episodes`` fixed fresh episodes of 1000 steps (not counted). The
benchmark prints reward at a quarter, half and all of the budget (mean and
spread over seeds) and plots reward against environment steps to
benchmarks/figures/pes_control.png.
"""

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from benchmarks import common
from l2o.estimators.es import PES, TruncatedES
from l2o.systems.control import LinearPolicyParticles

FIGURE = common.figure_path("pes_control.png")
EVALUATION_SEEDS = 10_000  # evaluation episode i starts from reset(seed = 10000 + i)


@dataclass(frozen=True)
class Method:
    label: str
    population: type
    truncations_per_episode: int  # K = T / this
    sigma: float
    learning_rate: float
    colour: str


METHODS = {
    "es_full": Method("full-unroll ES (K = T)", TruncatedES, 1, 0.3, 0.3, "#ff7f0e"),
    "es_truncated": Method("truncated ES (K = T/10)", TruncatedES, 10, 0.1, 0.1, "#d62728"),
    "pes": Method("PES (K = T/10)", PES, 10, 0.3, 0.1, "#1f77b4"),
}


def train(method, seed, args):
    """``[(environment steps, mean evaluation return)]`` of one run."""
    system = LinearPolicyParticles(args.env)
    evaluator = LinearPolicyParticles(args.env)  # its own simulator: training state untouched
    evaluation_seeds = range(EVALUATION_SEEDS, EVALUATION_SEEDS + args.eval_episodes)
    truncation = args.horizon // method.truncations_per_episode
    population = method.population(system.unroll, system.initial_state, sigma=method.sigma,
                                   n_particles=args.particles, horizon=args.horizon)
    theta = np.zeros(system.parameter_count, np.float32)
    generator = np.random.default_rng(seed)
    curve = [(0, evaluator.mean_return(theta, evaluation_seeds, args.horizon))]
    while system.simulated_steps < args.budget:
        gradient, _ = population.estimate(theta, generator, truncation)
        spread = float(np.std(system.losses[:args.particles]))  # truncated ES's extra copy: last
        if spread > 0:
            theta = theta - np.float32(method.learning_rate * 2 * method.sigma / spread) * gradient
        if system.simulated_steps >= len(curve) * args.eval_every or \
                system.simulated_steps >= args.budget:
            curve.append((system.simulated_steps,
                          evaluator.mean_return(theta, evaluation_seeds, args.horizon)))
    return np.array(curve)


def reward_at(curve, steps):
    """The evaluation return of the last evaluation at or before ``steps``."""
    return curve[np.searchsorted(curve[:, 0], steps, side="right") - 1, 1]


def plot(curves, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    grid = np.linspace(0, args.budget, 200)
    for name, runs in curves.items():
        rewards = np.array([[reward_at(curve, steps) for steps in grid] for curve in runs])
        ax.plot(grid, rewards.mean(0), color=METHODS[name].colour, lw=2,
                label=f"{METHODS[name].label}, mean of {len(runs)} seeds")
        ax.fill_between(grid, rewards.min(0), rewards.max(0), color=METHODS[name].colour,
                        alpha=0.2)
    ax.set(xlabel="environment steps (all particles)", ylabel="total reward (1000-step episode)",
           title=f"{args.env}, linear policy: ES vs PES ({args.particles} particles; "
                 f"band: min-max over seeds)")
    ax.legend()
    os.makedirs(os.path.dirname(os.path.abspath(args.figure)), exist_ok=True)
    figure.savefig(args.figure, dpi=110, bbox_inches="tight")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Swimmer-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--budget", type=int, default=500_000,
                        help="environment steps per run (all particles)")
    parser.add_argument("--horizon", type=int, default=1000, help="T, steps per episode")
    parser.add_argument("--particles", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=40_000)
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--figure", default=FIGURE)
    parser.add_argument("--quick", action="store_true",
                        help="T = 100, 10000 steps per run, one seed, one evaluation episode")
    args = parser.parse_args(argv)
    if args.quick:
        args.horizon, args.budget, args.eval_every = 100, 10_000, 2_500
        args.seeds, args.eval_episodes = args.seeds[:1], 1

    print(f"{args.env}, T = {args.horizon}, {args.particles} particles, {args.budget} "
          f"environment steps per run, seeds {args.seeds}; evaluation: mean return of "
          f"{args.eval_episodes} fixed episodes\n")
    quarters = (args.budget // 4, args.budget // 2, args.budget)
    print("| method | K | sigma | lr | " + " | ".join(f"reward @ {steps} steps"
                                                       for steps in quarters)
          + " | seconds per run |")
    print("| --- " * (5 + len(quarters)) + "|")
    curves = {}
    for name in args.methods:
        method, started = METHODS[name], time.perf_counter()
        curves[name] = [train(method, seed, args) for seed in args.seeds]
        cells = []
        for steps in quarters:
            rewards = [reward_at(curve, steps) for curve in curves[name]]
            cells.append(f"{np.mean(rewards):.1f} ({np.min(rewards):.1f} .. "
                         f"{np.max(rewards):.1f})")
        print(f"| {method.label} | {args.horizon // method.truncations_per_episode} | "
              f"{method.sigma} | {method.learning_rate} | " + " | ".join(cells)
              + f" | {(time.perf_counter() - started) / len(args.seeds):.0f} |", flush=True)
    plot(curves, args)
    print(f"\nreward: mean (min .. max) over seeds. figure: {os.path.relpath(args.figure)}")
    return curves


if __name__ == "__main__":
    main()

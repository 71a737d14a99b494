"""Influence balancing (Vicol et al. 2021, section 5.1): which estimators find theta* = -1/6.

    python -m benchmarks.pes_paper.influence_balancing [--iterations 3000] [--particles 1000]

From theta = 0.5 and s = 1, each iteration advances the inner system one truncation of K
steps and takes an SGD step (lr 1e-4) on the estimated gradient of that truncation's final
loss 0.5 (s[0] - 1)^2. TBPTT holds the state fixed at each truncation's start (K = 1, 10,
100); truncated ES and PES use N particles, sigma 0.1, K = 1 and no horizon; RTRL and UORO
carry forward-mode influences (K = 1). All seven run ``l2o.systems.influence.SYSTEM``
through the one ``estimate(theta, generator, length)`` of ``l2o.estimators.online``. Prints
final theta, its distance to -1/6, and the loss after 500 steps of the inner system from
s = 1 with the final theta.
"""

import argparse
import time

import numpy as np
from keras import ops

from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.online import RTRL, UORO, OnlineTBPTT
from l2o.systems import influence

TARGET = -1.0 / 6.0


def estimators(particles):
    """``{name: (estimator, truncation length)}``."""
    def es_family(kind):
        return kind(influence.SYSTEM.unroll, influence.initial_state, sigma=0.1,
                    n_particles=particles)

    return {"tbptt K=1": (OnlineTBPTT(influence.SYSTEM), 1),
            "tbptt K=10": (OnlineTBPTT(influence.SYSTEM), 10),
            "tbptt K=100": (OnlineTBPTT(influence.SYSTEM), 100),
            "es K=1": (es_family(TruncatedES), 1), "pes K=1": (es_family(PES), 1),
            "rtrl": (RTRL(influence.SYSTEM), 1), "uoro": (UORO(influence.SYSTEM), 1)}


def loss_after(theta, steps=500):
    thetas = ops.convert_to_tensor([[theta]], "float64")
    return float(influence.SYSTEM.meta_objective(thetas, steps)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    print(f"{args.iterations} iterations, SGD lr {args.lr}, N = {args.particles}, sigma 0.1; "
          f"theta* = -1/6 = {TARGET:.4f}\n")
    print("| method | final theta | abs(theta - theta*) | loss after 500 steps | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name, (estimator, length) in estimators(args.particles).items():
        theta, generator, started = 0.5, np.random.default_rng(0), time.perf_counter()
        for _ in range(args.iterations):
            theta -= args.lr * float(estimator.estimate([theta], generator, length)[0][0])
            if not np.isfinite(theta):
                break
        print(f"| {name} | {theta:.4f} | {abs(theta - TARGET):.4f} | {loss_after(theta):.3g} | "
              f"{time.perf_counter() - started:.0f} |")


if __name__ == "__main__":
    main()

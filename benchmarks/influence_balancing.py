"""Influence balancing (Vicol et al. 2021, section 5.1): which estimators find theta* = -1/6.

    python benchmarks/influence_balancing.py [--iterations 3000] [--particles 1000]

From theta = 0.5 and s = 1, each iteration advances the inner system one truncation of K
steps and takes an SGD step (lr 1e-4) on the estimated gradient of that truncation's final
loss 0.5 (s[0] - 1)^2. TBPTT holds the state fixed at each truncation's start (K = 1, 10,
100); truncated ES and PES use N particles, sigma 0.1, K = 1 and no horizon; RTRL and UORO
carry forward-mode influences. Prints final theta, its distance to -1/6, and the loss after
500 steps of the inner system from s = 1 with the final theta.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

from l2o.estimators.es import PES, TruncatedES
from l2o.estimators.forward import RTRL, UORO
from l2o.problems import influence

TARGET = -1.0 / 6.0


def tbptt(truncation):
    state = influence.initial_state()[None]

    def estimate(theta):
        nonlocal state
        variable = tf.constant([[theta]])
        with tf.GradientTape() as tape:
            tape.watch(variable)
            losses, new_state = influence.unroll(variable, state, truncation)
            loss = losses[0]
        state = tf.stop_gradient(new_state)
        return float(tape.gradient(loss, variable)[0, 0])

    return estimate


def es_family(kind, particles, seed):
    generator = np.random.default_rng(seed)
    estimator = kind(influence.truncation, influence.initial_state, sigma=0.1,
                     n_particles=particles)
    return lambda theta: float(estimator.estimate(np.array([theta], np.float32),
                                                  generator, 1)[0][0])


def forward(kind, seed):
    arguments = (influence.transition(), np.ones(influence.DIMENSION))
    estimator = RTRL(*arguments) if kind == "rtrl" else UORO(
        *arguments, np.random.default_rng(seed))
    return lambda theta: float(estimator.estimate(theta, 1)[0])


def loss_after(theta, steps=500):
    a, b = influence.transition()
    state = np.ones(influence.DIMENSION)
    for _ in range(steps):
        state = a @ state + theta * b
    return 0.5 * (state[0] - 1.0) ** 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    methods = {"tbptt K=1": tbptt(1), "tbptt K=10": tbptt(10), "tbptt K=100": tbptt(100),
               "es K=1": es_family(TruncatedES, args.particles, 0),
               "pes K=1": es_family(PES, args.particles, 0),
               "rtrl": forward("rtrl", 0), "uoro": forward("uoro", 0)}
    print(f"{args.iterations} iterations, SGD lr {args.lr}, N = {args.particles}, sigma 0.1; "
          f"theta* = -1/6 = {TARGET:.4f}\n")
    print("| method | final theta | abs(theta - theta*) | loss after 500 steps | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name, estimate in methods.items():
        theta, started = 0.5, time.perf_counter()
        for _ in range(args.iterations):
            theta -= args.lr * estimate(theta)
            if not np.isfinite(theta):
                break
        print(f"| {name} | {theta:.4f} | {abs(theta - TARGET):.4f} | {loss_after(theta):.3g} | "
              f"{time.perf_counter() - started:.0f} |")


if __name__ == "__main__":
    main()

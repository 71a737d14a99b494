"""PIO with a constant sigma against decaying sigma schedules, on Carrillo with the optimum at B = 2.

    python -m benchmarks.pio_paper.sigma_schedules [--seeds 10] [--steps 100] [--quick] [--out PATH]

PIO (``drift_format: f``, the sampler settings of ``min_loss_sweep.PIO_SAMPLER["carrillo"]``,
i.e. the defaults: 32 trajectories, dt 0.05 over t_end 5) on the 2-D Carrillo function with
its optimum moved from PIO's prior centre 0 to B = 2, with ``network/sigma_schedule``
(sigma_t = sigma * s(t) / s(0) at PIO's step t = 0, 1, ...) one of:

- constant: no schedule, sigma_t = sigma;
- exponential: ``ExponentialDecay``, sigma_t = sigma * 0.01^(t / T);
- cosine: ``CosineDecay`` with alpha 0.01, from sigma to sigma / 100 along half a cosine;
- inverse-time: ``InverseTimeDecay``, sigma_t = sigma / (1 + 99 t / T), the decrease the
  PIO paper's theory asks for (fast at first, then slowly);

with T = the number of steps, so each schedule ends 100x below its start. All start at
sigma = 0.1 with the drift's Adam learning rate 0.01 and ``sigma_rescaling: none``. Each seed
runs T steps from ``problem.init(seed)`` on ``problem.batches(seed, 0, T)`` through
``backend.make_train_step``, with a fresh ``PIOOptimizer(seed=seed)`` and so a fresh trace:
``min_loss_sweep.reset_pio`` would reuse one trace across seeds by moving the iteration counter,
which is the schedules' clock. The test loss (Carrillo's value) is recorded after each step;
the table gives, per schedule, mean ± s.d. (ddof 0) over seeds of the test loss after the
last step and of its minimum over the steps, and the wall time of all seeds (tracing
included) with the time per step after each seed's first. ``--out`` writes every curve and
the sigma each step ran at as JSON. ``--quick``: 2 seeds x 10 steps.
"""

import argparse
import json
import sys
import time

import keras
import numpy as np
from keras import ops

from benchmarks.pio_paper import min_loss_sweep as compare
from l2o import backend
from l2o.optimizers.pio import PIOOptimizer

SIGMA, LEARNING_RATE, DECAY = 0.1, 0.01, 0.01  # start, drift Adam rate, s(T) / s(0)
SCHEDULES = ("constant", "exponential", "cosine", "inverse-time")


def sigma_schedule(name, steps):
    """The Keras schedule of ``name`` that falls by ``DECAY`` over ``steps`` (none: constant)."""
    schedules = keras.optimizers.schedules
    if name == "constant":
        return None
    if name == "exponential":
        return schedules.ExponentialDecay(1.0, decay_steps=steps, decay_rate=DECAY)
    if name == "cosine":
        return schedules.CosineDecay(1.0, decay_steps=steps, alpha=DECAY)
    return schedules.InverseTimeDecay(1.0, decay_steps=steps, decay_rate=1 / DECAY - 1)


def network(name, steps):
    settings = {"drift_format": "f", "sigma": SIGMA, "sigma_rescaling": "none",
                **compare.PIO_SAMPLER["carrillo"]["pio"]}
    schedule = sigma_schedule(name, steps)
    if schedule is not None:
        settings["sigma_schedule"] = keras.optimizers.schedules.serialize(schedule)
    return settings


def run_schedule(name, seeds, steps):
    """Test-loss and sigma curves [seeds, steps] of one schedule, and its timings."""
    problem = compare.PROBLEMS["carrillo-b2"][1]()
    test_loss = compare.make_test_loss(problem)
    settings = network(name, steps)
    losses, sigmas = np.full((len(seeds), steps), np.nan), np.full((len(seeds), steps), np.nan)
    step_seconds, started = 0.0, time.perf_counter()
    for row, seed in enumerate(seeds):
        model = problem.build_model(problem.init(seed))
        optimizer = PIOOptimizer(network=settings, learning_rate=LEARNING_RATE, seed=seed)
        train_step = backend.make_train_step(problem.loss, model.trainable_variables, optimizer)
        batches = problem.batches(seed, 0, steps)
        for step in range(steps):
            # The sigma this step runs at: the compiled step computes it from the same counter.
            sigmas[row, step] = float(optimizer.current_sigma(optimizer.learning_rate))
            before = time.perf_counter()
            train_step(compare.to_tensors(batches, step))
            if step:  # the first call traces the step
                step_seconds += time.perf_counter() - before
            losses[row, step] = float(test_loss(
                [ops.convert_to_tensor(v) for v in model.trainable_variables]))
    return {"schedule": name, "network": settings, "seeds": list(seeds),
            "test_loss": losses.tolist(), "sigma": sigmas.tolist(),
            "final": losses[:, -1].tolist(), "minimum": losses.min(axis=1).tolist(),
            "seconds": time.perf_counter() - started,
            "ms_per_step": 1000 * step_seconds / max(len(seeds) * (steps - 1), 1)}


def spread(values):
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def print_table(results, steps):
    seeds = len(results[0]["seeds"])
    print(f"\nPIO on Carrillo (d = 2, B = 2), sigma from {SIGMA:g} (x {DECAY:g} by step {steps} "
          f"when scheduled), drift lr {LEARNING_RATE:g}; test loss mean ± s.d. over {seeds} "
          f"seeds x {steps} steps\n")
    print("| sigma schedule | sigma at the last step | final test loss | min test loss over "
          "steps | wall s (all seeds) | ms/step |")
    print("|" + " --- |" * 6)
    for result in results:
        print(f"| {result['schedule']} | {result['sigma'][0][-1]:.4g} | "
              f"{spread(result['final'])} | {spread(result['minimum'])} | "
              f"{result['seconds']:.0f} | {result['ms_per_step']:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 seeds x 10 steps")
    parser.add_argument("--out", default=None, help="write every curve here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 2, 10
    results = []
    for name in SCHEDULES:
        results.append(run_schedule(name, range(args.seeds), args.steps))
        print(f"[{name}] final {spread(results[-1]['final'])}, minimum "
              f"{spread(results[-1]['minimum'])} ({results[-1]['seconds']:.0f} s)", flush=True)
    print_table(results, args.steps)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"steps": args.steps, "results": results}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DM, RNNProp, ScaleBasic and ScaleHierarchical with the same meta-training budget on MLP-MNIST.

    python -m benchmarks.learned.same_budget_mnist [--periods 10] [--steps 1000] [--repeats 10]

Each optimiser is meta-trained with configs/<name>_mnist.yaml for the same number of
inner steps (``--periods`` periods of 20 epochs x 5 truncations x 20 steps), its best
checkpoint evaluated for ``--steps`` steps x ``--repeats`` seeds, beside the Adam
learning-rate grid of the config, on identical seeds and batches. Prints, for the
horizons 100 and ``--steps``, the mean final training loss of each, the best Adam,
the number of runs that diverged, and each optimiser's ``model.fit`` step time
relative to Adam.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import ROOT

CONFIGS = {"DM": "dm_mnist", "RNNProp": "rnnprop_mnist", "ScaleBasic": "scale_basic_mnist",
           "ScaleHierarchical": "scale_hierarchical_mnist"}


def run(*command):
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def curves(folder, label):
    with np.load(os.path.join(folder, f"{label}.npz")) as data:
        return data["problem0/train_loss"]


def horizon_summary(train_loss, step):
    finals = train_loss[:, step - 1]
    finite = finals[np.isfinite(finals)]
    mean = float(np.mean(finite)) if len(finite) else float("nan")
    return mean, float(np.std(finite)) if len(finite) else float("nan"), int(
        np.sum(~np.isfinite(finals) | (finals > 2.5)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--fit-steps", type=int, default=200)
    args = parser.parse_args()
    evaluation = [f"evaluation/steps={args.steps}", f"evaluation/repeats={args.repeats}"]
    minutes, folders = {}, {}
    for name, config in CONFIGS.items():
        directory = f"runs/compare_{config}"
        started = time.perf_counter()
        run("train.py", f"configs/{config}.yaml", "--overwrite", f"directory={directory}",
            f"strategy/num_periods={args.periods}", *evaluation)
        minutes[name] = (time.perf_counter() - started) / 60
        run("evaluate.py", directory, "--no-baseline", *evaluation)
        folders[name] = os.path.join(ROOT, directory, "evaluation")
    baseline_dir = f"runs/compare_{CONFIGS['DM']}"
    run("baseline.py", baseline_dir, *evaluation)
    baseline_folder = os.path.join(ROOT, baseline_dir, "evaluation")
    adam = {label[:-5]: curves(baseline_folder, label[:-5])
            for label in os.listdir(baseline_folder)
            if label.startswith("Adam") and label.endswith(".json")}

    import keras

    from benchmarks.systems.meta_training_throughput import (
        fit_step_ms,  # measured last, on a quiet machine
    )
    from l2o.optimizers import OPTIMIZERS, LearnedOptimizer

    CONSTRUCTORS = {n: c for n, c in OPTIMIZERS.items() if issubclass(c, LearnedOptimizer)}

    adam_ms = fit_step_ms(lambda: keras.optimizers.Adam(0.001), args.fit_steps)
    print(f"\nmeta-training budget: {args.periods} periods = {args.periods * 2000} inner steps; "
          f"evaluation: {args.repeats} seeds\n")
    horizons = (100, args.steps)
    header = " | ".join(f"loss @{h} (mean ± std) | diverged @{h}" for h in horizons)
    print(f"| optimiser | meta-training min | {header} | model.fit ms/step (x Adam) |")
    print("| --- " * (3 + 2 * len(horizons)) + "|")
    for name, folder in folders.items():
        loss = curves(folder, "learned_best")
        cells = []
        for h in horizons:
            mean, std, diverged = horizon_summary(loss, h)
            cells += [f"{mean:.4f} ± {std:.4f}", str(diverged)]
        ms = fit_step_ms(lambda name=name: CONSTRUCTORS[name](), args.fit_steps)
        print(f"| {name} | {minutes[name]:.1f} | " + " | ".join(cells)
              + f" | {ms:.2f} ({ms / adam_ms:.1f}x) |")
    for h in horizons:
        best = min(adam, key=lambda label: horizon_summary(adam[label], h)[0])
        mean, std, diverged = horizon_summary(adam[best], h)
        print(f"| best Adam @{h}: {best} | | " + (" | " * (2 * horizons.index(h)))
              + f"{mean:.4f} ± {std:.4f} | {diverged}" + " |" * (2 * (len(horizons)
                                                                     - horizons.index(h)) - 1)
              + f" {adam_ms:.2f} (1.0x) |")
    with open(os.path.join(ROOT, "runs", "compare_summary.json"), "w") as handle:
        json.dump({"minutes": minutes}, handle)


if __name__ == "__main__":
    main()

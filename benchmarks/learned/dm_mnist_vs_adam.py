"""Quality: DM meta-trained on MLP-MNIST, evaluated against Adam and an Adam learning-rate grid.

    python -m benchmarks.learned.dm_mnist_vs_adam [--directory runs/bench_dm_mnist] [overrides ...]

Runs the user-facing commands (train.py, evaluate.py, baseline.py) on
configs/dm_mnist.yaml, then prints a markdown table of the final training loss
after ``evaluation/steps`` steps over ``evaluation/repeats`` seeds, and the
meta-training wall time (the budget is at most 15 minutes).
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import ROOT


def run(*command):
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", default="runs/bench_dm_mnist")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = [f"directory={args.directory}", *args.overrides]
    started = time.perf_counter()
    run("train.py", "configs/dm_mnist.yaml", "--overwrite", *overrides)
    train_minutes = (time.perf_counter() - started) / 60
    run("evaluate.py", args.directory, "--no-baseline")
    run("baseline.py", args.directory)
    folder = os.path.join(ROOT, args.directory, "evaluation")
    rows = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                summary = json.load(handle)
            result = summary["problems"][0]
            rows.append((result["final_train_loss_mean"], summary["label"], result))
    rows.sort(key=lambda row: (not row[1].startswith("learned"), row[0]))
    print(f"\nmeta-training wall time: {train_minutes:.1f} min")
    print(f"evaluation: {summary['steps']} steps x {summary['repeats']} seeds\n")
    print("| optimiser | final train loss (mean ± std) | final validation loss | "
          "final validation accuracy |")
    print("| --- | --- | --- | --- |")
    for _, label, result in rows:
        print(f"| {label} | {result['final_train_loss_mean']:.4f} ± "
              f"{result['final_train_loss_std']:.4f} | "
              f"{result['final_validation_loss_mean']:.4f} | "
              f"{result['final_validation_accuracy_mean']:.4f} |")


if __name__ == "__main__":
    main()

"""What the benchmarks share: where the repository, the data, the outputs and the figures are,
and median timing. No backend is imported."""

import os
import time

import numpy as np

# The repository: benchmarks run as ``python -m benchmarks.<group>.<name>`` from here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Cached runs and full tables (git ignores it); each benchmark writes under its own folder.
OUT = os.path.join(ROOT, "benchmarks", "out")
# The figures the results pages (docs/results/) name, committed.
FIGURES = os.path.join(ROOT, "benchmarks", "figures")
CONFIGS = os.path.join(ROOT, "configs")


def out_path(*parts):
    """A path under ``benchmarks/out/``."""
    return os.path.join(OUT, *parts)


def figure_path(name):
    """``benchmarks/figures/<name>``: a figure's default path."""
    return os.path.join(FIGURES, name)


def config_path(name):
    """A shipped config, ``configs/<name>``, by absolute path (no working-directory
    assumption)."""
    return os.path.join(CONFIGS, name)


def data_root():
    """The folder holding one folder per named data set (``mnist/`` of IDX files), as l2o
    resolves ``dataset: mnist`` without a ``data_dir``: ``$L2O_DATA``; None when it is not set
    (then l2o falls back to TensorFlow Datasets)."""
    return os.environ.get("L2O_DATA")


def median_times(routes, rounds):
    """{name: median seconds per call} of ``routes`` ({name: callable(round)}), timed
    interleaved round by round after one untimed call each (which compiles)."""
    for run in routes.values():
        run(0)
    seconds = {name: [] for name in routes}
    for round_ in range(1, rounds + 1):
        for name, run in routes.items():
            started = time.perf_counter()
            run(round_)
            seconds[name].append(time.perf_counter() - started)
    return {name: float(np.median(times)) for name, times in seconds.items()}

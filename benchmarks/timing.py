"""Timing shared by the benchmarks (no backend imported)."""

import time

import numpy as np


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

"""ES/PES noise: milliseconds to draw one truncation's antithetic perturbations.

    python -m benchmarks.systems.noise_draw [--pairs 4 8 16 32 500] [--sizes 8 1700] [--rounds 7]

Each antithetic pair j of a truncation has its own numpy stream (``Stream.PARTICLE_NOISE``,
keyed by the truncation's noise seed and j), so that any shard of the pairs, in any
process, draws the same noise. Two ways to draw the same numbers: a numpy Generator built
for each pair (``rng(...)``: a SeedSequence and a PCG64 seeding per pair), and
``l2o.streams.standard_normals``, which seeds every pair's stream in one vectorised pass
(what ``antithetic_noise`` uses). Sizes are the meta-weight counts drawn for (8: a
ScheduledSGD schedule; 1700: about a 32-32 NormalizedMLP). Median of interleaved rounds in
one process; the two results are checked equal first.
"""

import argparse

import numpy as np

from benchmarks import common
from l2o.streams import Stream, rng, standard_normals


def per_pair(pairs, size):
    return lambda round_: np.stack([rng(Stream.PARTICLE_NOISE, round_, j).standard_normal(size)
                                    for j in range(pairs)])


def vectorised(pairs, size):
    return lambda round_: standard_normals(Stream.PARTICLE_NOISE, round_, last=range(pairs),
                                           shape=(size,))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[4, 8, 16, 32, 500])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 1700])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("| pairs (N / 2) | meta-weights | a Generator per pair, ms | one vectorised call, ms "
          "| speed-up |\n| --- | --- | --- | --- | --- |")
    for pairs in args.pairs:
        for size in args.sizes:
            routes = {"per pair": per_pair(pairs, size), "vectorised": vectorised(pairs, size)}
            np.testing.assert_array_equal(routes["per pair"](0), routes["vectorised"](0))
            seconds = common.median_times(routes, args.rounds)
            print(f"| {pairs} | {size} | {1e3 * seconds['per pair']:.2f} | "
                  f"{1e3 * seconds['vectorised']:.2f} | "
                  f"{seconds['per pair'] / seconds['vectorised']:.1f}x |")


if __name__ == "__main__":
    main()

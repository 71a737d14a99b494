"""PES's variance against the number of unrolls, on a toy character LSTM (Vicol et al. 2021).

    python -m benchmarks.pes_paper.variance            # about 3 minutes on one core
    python -m benchmarks.pes_paper.variance --quick    # seconds

The unrolled system is ``l2o.systems.char_lstm`` (H = 10 hidden units, 27
characters, d = 1817 parameters, theta at its seeded initialisation) reading
truncations of K = 10 characters, its state carried across them, in three
scenarios: ``real``, the start of ``char_lstm.docstring_corpus()`` (module
docstrings of a fixed list of Python 3.11 standard-library modules; the paper
used Penn Treebank characters); ``random``, characters drawn uniformly (the
unrolls' gradients nearly uncorrelated); ``repeat``, the corpus's first K
characters repeated every truncation (strongly correlated). At the fixed theta,
R independent antithetic pairs (the particles of one ``PES`` population of the
toolkit, vectorised) give R independent estimates, and for each number of
unrolls t the total variance (the trace of the covariance over theta's d
coordinates) of one pair's (N = 2) estimate of:

- PES at unroll t: xi_t (L_t^+ - L_t^-) / (2 sigma^2), xi_t = eps_1 + .. + eps_t,
  what a meta-optimiser gets from truncation t (pair j's xi is the population's
  accumulated noise, its L's the losses the population's unroll returned);
- PES summed over unrolls 1..t: unbiased for the gradient of the total loss of
  the t unrolls (each with its own smoothing noise);
- ES over the full t unrolls: one eps for all of them, eps (sum L^+ - sum L^-)/(2 sigma^2),
  the same total loss's gradient;
- truncated ES at unroll t (``TruncatedES``): fresh eps on truncation t alone, from
  the unperturbed state (the single-truncation reference, biased).

Theory (small sigma, so that L is linear in the perturbations; derived here,
not the paper's equations): with h[a, tau] = dL_a / d theta_tau the sensitivity
of truncation a's loss to the copy of theta used in truncation tau <= a (one
Jacobian of the unperturbed trajectory), z ~ N(0, I) and
E[z z^T M z z^T] = M + M^T + tr(M) I,

    PES at t:        |sum_tau h[t, tau]|^2 + d t sum_tau |h[t, tau]|^2
    PES summed:      sum_{a, b <= t} (P[a, b] . P[b, a]
                                      + d min(a, b) sum_tau h[a, tau] . h[b, tau])
    ES, full:        (d + 1) |g_t|^2,   g_t = sum_{a <= t} sum_tau h[a, tau]
    truncated ES:    (d + 1) |h[t, t]|^2,

P[a, b] = sum_{tau <= b} h[a, tau]. Where the direct sensitivities g_a = h[a, a]
dominate (the LSTM forgets across a truncation), PES summed ~ d sum_a a |g_a|^2
(xi_a holds a perturbations) against ES's (d + 1) |sum_a g_a|^2: PES / ES ~ 1/2
when every unroll has the same gradient (``repeat``) and ~ t/2 when the
unrolls' gradients are orthogonal and equally large (``random``), PES at unroll
t grows like t, and truncated ES stays flat. The estimates are checked against
these predictions (the ratio measured / predicted is printed) and the mean PES
sum against the exact gradient g_t (a z-score along g_t). The table gives a few
t; the figure, every t, is benchmarks/figures/pes_variance.png (log scale, as
in the paper).
"""

import argparse
import os
import sys
import time

import numpy as np
from keras import ops

from benchmarks import common
from l2o import backend
from l2o.estimators.es import PES, TruncatedES, antithetic_noise, repeat_state
from l2o.systems import char_lstm

SCENARIOS = ("real", "random", "repeat")
ESTIMATES = ("pes", "pes_sum", "es_full", "es_truncated")
LABELS = {"pes": "PES at unroll t", "pes_sum": "PES summed over 1..t",
          "es_full": "ES over the full t unrolls", "es_truncated": "truncated ES at unroll t"}
COLOURS = {"pes": "#1f77b4", "pes_sum": "#2ca02c", "es_full": "#d62728",
           "es_truncated": "#ff7f0e"}
FIGURE = common.figure_path("pes_variance.png")


def scenario_sequence(scenario, steps, truncation, seed=0):
    """The ``steps + 1`` characters (integers) the LSTM reads in ``scenario``."""
    corpus = char_lstm.encode(char_lstm.docstring_corpus())
    if steps + 1 > corpus.size:
        raise ValueError(f"the corpus has {corpus.size} characters, {steps + 1} needed")
    if scenario == "real":
        return corpus[:steps + 1]
    if scenario == "random":
        return np.random.default_rng(seed).integers(0, len(char_lstm.ALPHABET), steps + 1)
    return np.resize(corpus[:truncation], steps + 1)  # repeat


class RecordedUnroll:
    """A compiled truncation of ``system`` that keeps the last call's thetas and losses."""

    def __init__(self, system, truncation):
        self.compiled = backend.compile_fn(
            lambda thetas, states, steps: system.unroll(thetas, states, steps, truncation))

    def __call__(self, thetas, states, steps, length):
        losses, states = self.compiled(thetas, states, np.asarray(steps, np.int64))
        self.thetas, self.losses = ops.convert_to_numpy(thetas), ops.convert_to_numpy(losses)
        return losses, states


def pair_estimates(directions, losses, sigma):
    """One estimate per antithetic pair: directions_j (L_j - L_{j+R}) / (2 sigma^2), [R, d]."""
    pairs = len(directions)
    difference = losses[:pairs].astype(np.float64) - losses[pairs:]
    return directions.astype(np.float64) * (difference / (2.0 * sigma ** 2))[:, None]


def total_variance(estimates):
    return float(np.sum(np.var(estimates, axis=0, ddof=1)))


def measure(system, theta, sigma, pairs, unrolls, truncation, seed=0):
    """``(variances, pes_sums)``: the total variance of each of ``ESTIMATES`` at t = 1..unrolls
    ([unrolls] each) and the R pairs' PES sums at t = unrolls."""
    generator = np.random.default_rng(seed)
    variances = {name: np.zeros(unrolls) for name in ESTIMATES}
    recorded = RecordedUnroll(system, truncation)

    pes = PES(recorded, system.initial_state, sigma, 2 * pairs)
    pes_sums = 0.0
    for t in range(unrolls):
        gradient, _ = pes.estimate(theta, generator, truncation)
        per_pair = pair_estimates(pes.accumulated[:pairs], recorded.losses, sigma)
        # The pairs' estimates are the population's own, split: their mean is its estimate.
        assert np.allclose(per_pair.mean(axis=0), gradient, rtol=1e-3, atol=1e-4 * np.abs(
            gradient).max()), "per-pair PES estimates do not average to the population's"
        pes_sums = pes_sums + per_pair
        variances["pes"][t], variances["pes_sum"][t] = (total_variance(per_pair),
                                                        total_variance(pes_sums))

    truncated = TruncatedES(recorded, system.initial_state, sigma, 2 * pairs)
    for t in range(unrolls):
        truncated.estimate(theta, generator, truncation)
        noise = recorded.thetas[:pairs] - theta
        variances["es_truncated"][t] = total_variance(
            pair_estimates(noise, recorded.losses[:-1], sigma))

    noise = antithetic_noise(seed, range(pairs), theta.shape, sigma)
    thetas = ops.convert_to_tensor(theta[None] + noise)
    states = repeat_state(system.initial_state(), 2 * pairs)
    summed = 0.0
    for t in range(unrolls):
        _, states = recorded(thetas, states, np.full(2 * pairs, t * truncation), truncation)
        summed = summed + recorded.losses.astype(np.float64)
        variances["es_full"][t] = total_variance(pair_estimates(noise[:pairs], summed, sigma))
    return variances, pes_sums


def sensitivities(system, theta, unrolls, truncation):
    """h[a, tau] = d L_a / d theta_tau along the unperturbed trajectory, [unrolls, unrolls, d]
    (float64), theta_tau the copy of theta used in truncation tau."""
    def own_truncation_losses(copies):
        # Particle a runs the trajectory with its own copies [a, tau]; only its loss of
        # truncation a is kept, so one backward pass gives every row h[a] at once.
        state = ops.repeat(system.initial_state(dtype="float64")[None], unrolls, axis=0)
        total = 0.0
        for tau in range(unrolls):
            losses, state = system.unroll(copies[:, tau], state, tau * truncation, truncation)
            total = total + losses[tau]
        return total, None

    # Eager: tracing the unrolled T K steps would cost more than running them once.
    gradient = backend.value_and_grad(own_truncation_losses, None)
    copies = np.broadcast_to(theta.astype(np.float64), (unrolls, unrolls, theta.size))
    _, h = gradient(ops.convert_to_tensor(copies))
    return ops.convert_to_numpy(h)


def predictions(h):
    """The linear-regime total variances of one antithetic pair's estimates (module docstring)
    at t = 1..T, and the exact gradients g_t of the t unrolls' total loss, [T, d]."""
    unrolls, _, dimension = h.shape
    prefix = np.cumsum(h, axis=1)  # prefix[a, b] = P[a, b]
    totals = prefix[:, -1]  # sum_tau h[a, tau]
    gram = np.einsum("atd,btd->ab", h, h)
    cross = np.einsum("abd,bad->ab", prefix, prefix)
    steps = np.arange(1, unrolls + 1)
    terms = cross + dimension * np.minimum.outer(steps, steps) * gram
    gradients = np.cumsum(totals, axis=0)
    return {"pes": np.sum(totals ** 2, axis=1) + dimension * steps * np.diag(gram),
            "pes_sum": np.array([terms[:t, :t].sum() for t in steps]),
            "es_full": (dimension + 1) * np.sum(gradients ** 2, axis=1),
            "es_truncated": (dimension + 1) * np.sum(
                h[np.arange(unrolls), np.arange(unrolls)] ** 2, axis=1)}, gradients


def gradient_z_score(pes_sums, gradient):
    """(mean PES sum - g) along g's direction, in standard errors of the mean."""
    direction = gradient / np.linalg.norm(gradient)
    projections = pes_sums @ direction
    return float((projections.mean() - np.linalg.norm(gradient))
                 / (projections.std(ddof=1) / np.sqrt(len(projections))))


def run(scenario, args):
    steps = args.unrolls * args.truncation
    system = char_lstm.system(scenario_sequence(scenario, steps, args.truncation, args.seed),
                              args.hidden)
    theta = char_lstm.initial_theta(args.hidden, args.seed)
    variances, pes_sums = measure(system, theta, args.sigma, args.pairs, args.unrolls,
                                  args.truncation, args.seed)
    predicted, gradients = predictions(sensitivities(system, theta, args.unrolls,
                                                     args.truncation))
    return {"measured": variances, "predicted": predicted,
            "z": gradient_z_score(pes_sums, gradients[-1])}


def table_points(unrolls):
    return sorted({t for t in (1, 2, 5, 10, 20, 50, 100, unrolls) if t <= unrolls})


def print_table(results, unrolls):
    points = table_points(unrolls)
    print("| scenario | estimate | " + " | ".join(f"t = {t}" for t in points)
          + " | measured / predicted (mean over t) |")
    print("| --- | --- | " + " | ".join("---" for _ in points) + " | --- |")
    for scenario, result in results.items():
        for name in ESTIMATES:
            measured, predicted = result["measured"][name], result["predicted"][name]
            cells = " | ".join(f"{measured[t - 1]:.3g}" for t in points)
            ratio = np.mean(measured / predicted)
            print(f"| {scenario} | {LABELS[name]} | {cells} | {ratio:.2f} |")
    print("\nRatio PES summed / ES over the full t unrolls (measured):\n")
    print("| scenario | " + " | ".join(f"t = {t}" for t in points) + " |")
    print("| --- | " + " | ".join("---" for _ in points) + " |")
    for scenario, result in results.items():
        ratio = result["measured"]["pes_sum"] / result["measured"]["es_full"]
        print(f"| {scenario} | " + " | ".join(f"{ratio[t - 1]:.2f}" for t in points) + " |")


def plot(results, args, figure_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.2), sharey=True,
                                squeeze=False)
    unrolls = np.arange(1, args.unrolls + 1)
    for ax, (scenario, result) in zip(axes[0], results.items(), strict=True):
        for name in ESTIMATES:
            ax.plot(unrolls, result["measured"][name], color=COLOURS[name], lw=2,
                    label=LABELS[name])
            ax.plot(unrolls, result["predicted"][name], color="black", lw=0.8, ls="--",
                    zorder=3)
        ax.set(yscale="log", xlabel="number of unrolls t", title=f"{scenario}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("total variance of one antithetic pair's estimate")
    axes[0, 0].legend(fontsize=8, title="coloured: measured, black dashed: linear theory",
                      title_fontsize=8)
    figure.suptitle(f"PES variance, char LSTM (H = {args.hidden}, K = {args.truncation}, "
                    f"sigma = {args.sigma}, {args.pairs} pairs)")
    os.makedirs(os.path.dirname(os.path.abspath(figure_path)), exist_ok=True)
    figure.savefig(figure_path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--unrolls", type=int, default=50, help="T_max, truncations measured")
    parser.add_argument("--truncation", type=int, default=10, help="K, characters per unroll")
    parser.add_argument("--hidden", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=2000, help="antithetic pairs (estimates)")
    parser.add_argument("--sigma", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=FIGURE)
    parser.add_argument("--quick", action="store_true", help="a tiny run, in seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.unrolls, args.truncation, args.hidden, args.pairs = 5, 4, 3, 300
    print(f"char LSTM: H = {args.hidden}, d = {char_lstm.parameter_count(args.hidden)}, "
          f"K = {args.truncation}, sigma = {args.sigma}, {args.pairs} antithetic pairs, "
          f"t = 1..{args.unrolls}; corpus: module docstrings of "
          f"{', '.join(char_lstm.CORPUS_MODULES)} (Python {sys.version.split()[0]}), "
          f"{len(char_lstm.docstring_corpus())} characters\n")
    results = {}
    for scenario in args.scenarios:
        started = time.perf_counter()
        results[scenario] = run(scenario, args)
        print(f"{scenario}: {time.perf_counter() - started:.0f} s; mean PES sum at t = "
              f"{args.unrolls} vs the exact gradient, along it: z = {results[scenario]['z']:.2f}")
    print()
    print_table(results, args.unrolls)
    plot(results, args, args.figure)
    print(f"\nfigure: {os.path.relpath(args.figure)}")
    return results


if __name__ == "__main__":
    main()

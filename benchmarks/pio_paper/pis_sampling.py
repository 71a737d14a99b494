"""PIS as a sampler: log Z estimates and sample quality on the PIO repository's sampling targets.

    python -m benchmarks.pio_paper.pis_sampling            # ~7 minutes on one core
    python -m benchmarks.pio_paper.pis_sampling --quick    # seconds

The Path Integral Sampler (Zhang and Chen, ICLR 2022; ``l2o.optimizers.pio``)
trains a drift u so that dx = g u dt + g dW from x_0 = 0 ends, at t_end, at a
sample of pi ∝ exp(-E). Per trajectory the loss is

    L = int 0.5 ||u||^2 dt + E(x_1) + log N(x_1; 0, g^2 t_end I),

so -E[L] is a lower bound on log Z, and with the zero-mean stochastic cost
s = int u . dW, log mean exp(-(L + s)) is an importance-sampling estimate of
log Z (``log_normaliser_estimates``). The targets are those of the upstream's
``ou.yaml`` (1-D two-mode mixture), ``funnel.yaml`` (10-D funnel) and
``ps.yaml`` (its ``nine.yaml``: 2-D three-mode mixture), defined in
``l2o.systems.densities`` with their exact log Z = 0.

Settings are the upstream's (``configs/model/base.yaml``, ``datamodule.yaml``):
drift ``t_tnet_grad`` (``drift_format=grad``, PIS-Grad: a Fourier-feature
network, 2 layers of 64 channels, plus a learned time scale times the clipped
grad E; ``--drifts`` also runs PIS-NN, ``f``, the network alone),
16 trajectories per Adam step at lr 5e-3, dt 0.05, t_end 5, g = sqrt(0.2),
and the upstream's ``max_steps`` (300 ou, 200 ps) except the funnel (400
here, 1500 upstream). After training, ``--samples`` (6000, the upstream's
``VizSampleDist``) fresh trajectories give the log Z estimate, the lower bound,
the normalised effective sample size (the upstream's ``ess``) and a sample
statistic against the truth: the mixtures' mode weights (fraction of samples
nearest each mean; truth 1/K each) and the funnel's x_0 mean and variance
(truth 0 and 1). Each is the mean ± s.d. over ``--seeds`` seeds. Prints a
markdown table and draws benchmarks/figures/pis_sampling.png.
"""

import argparse
import os
import time

import numpy as np
from keras import ops

from benchmarks import common
from l2o.optimizers.pio import PIORule, fit_sampler, log_normaliser_estimates
from l2o.systems.densities import TARGETS

FIGURE = common.figure_path("pis_sampling.png")
# The upstream's trainer.max_steps per experiment (funnel: 1500, cut to fit one core).
ITERATIONS = {"mixture_1d": 300, "funnel": 400, "mixture_2d": 200}
UPSTREAM_EXPERIMENT = {"mixture_1d": "ou.yaml", "funnel": "funnel.yaml", "mixture_2d": "ps.yaml"}


def sample_statistic(target, samples):
    """(label, values, truth): mode weights for a mixture, x_0's mean and variance for the funnel."""
    if hasattr(target, "mode_of"):
        counts = np.bincount(target.mode_of(samples), minlength=len(target.means))
        return "mode weights", counts / len(samples), np.full(len(target.means),
                                                              1.0 / len(target.means))
    return "x0 mean, var", np.array([samples[:, 0].mean(), samples[:, 0].var()]), np.array(
        [0.0, 1.0])


def effective_sample_fraction(log_weights):
    """ESS / n = (sum w)^2 / (n sum w^2) of the importance weights."""
    weights = np.exp(log_weights - log_weights.max())
    return weights.sum() ** 2 / (len(weights) * np.square(weights).sum())


def run_target(target, rule, iterations, learning_rate, seed, samples):
    started = time.perf_counter()
    weights = fit_sampler(rule, target.energy, target.dimension, iterations, learning_rate, seed)
    result = rule.sample(weights, target.energy, target.dimension, samples, seed=10_000 + seed)
    lower_bound, log_z = (float(v) for v in log_normaliser_estimates(result))
    points = ops.convert_to_numpy(result["samples"])
    finite = np.all(np.isfinite(points), axis=1)
    label, statistic, truth = sample_statistic(target, points[finite])
    return {"log_z": log_z, "lower_bound": lower_bound,
            "ess": effective_sample_fraction(ops.convert_to_numpy(result["log_weight"])),
            "label": label, "statistic": statistic, "truth": truth, "samples": points[finite],
            "finite": finite.mean(), "seconds": time.perf_counter() - started}


def mean_sd(values, digits=3):
    values = np.asarray(values, float)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


def table(results, iterations):
    lines = [("| target (upstream) | drift | d | iterations | log Z | log Z estimate (error) | "
              "lower bound (error) | ESS / n | sample statistic: ours (truth) | seconds / seed |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (name, drift), (target, runs) in results.items():
        true = target.log_normaliser
        log_z = [r["log_z"] for r in runs]
        lower = [r["lower_bound"] for r in runs]
        statistic = np.mean([r["statistic"] for r in runs], axis=0)
        spread = (np.std([r["statistic"] for r in runs], axis=0, ddof=1) if len(runs) > 1
                  else np.zeros_like(statistic))
        ours = "/".join(f"{m:.2f}±{s:.2f}" for m, s in zip(statistic, spread))
        truth = "/".join(f"{t:.2f}" for t in runs[0]["truth"])
        lines.append(
            f"| {name} ({UPSTREAM_EXPERIMENT[name]}) | {drift} | {target.dimension} | "
            f"{iterations[name]} | "
            f"{true:.3f} | {mean_sd(log_z)} ({np.mean(log_z) - true:+.3f}) | "
            f"{mean_sd(lower)} ({np.mean(lower) - true:+.3f}) | "
            f"{mean_sd([r['ess'] for r in runs], 2)} | {runs[0]['label']}: {ours} ({truth}) | "
            f"{np.mean([r['seconds'] for r in runs]):.0f} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exact = np.random.default_rng(0)
    names = list(dict.fromkeys(name for name, _ in results))
    drifts = list(dict.fromkeys(drift for _, drift in results))
    columns = len(names) + ("funnel" in names)
    figure, axes = plt.subplots(len(drifts), columns, figsize=(4.5 * columns, 4.0 * len(drifts)),
                                squeeze=False)
    for row, drift in zip(axes, drifts):
        draw_row(iter(row), {name: results[name, drift] for name in names}, drift, exact)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_row(axes, results, drift, exact):
    """One drift's panels: the first seed's samples against the truth, per target."""
    for name, (target, runs) in results.items():
        samples = runs[0]["samples"]
        if name == "mixture_1d":
            ax = next(axes)
            grid = np.linspace(-3.5, 3.5, 400, dtype=np.float32)[:, None]
            density = np.exp(-ops.convert_to_numpy(target.energy(ops.convert_to_tensor(grid))))
            ax.hist(samples[:, 0], bins=80, density=True, alpha=0.6, label="PIS samples")
            ax.plot(grid[:, 0], density, "k", label="true density")
            ax.set(title=f"ou.yaml: 1-D two-mode mixture ({drift})", xlabel="x")
            ax.legend()
            continue
        truth = target.sample(len(samples), exact)
        if name == "funnel":
            ax = next(axes)
            grid = np.linspace(-4, 4, 200)
            ax.hist(samples[:, 0], bins=60, range=(-4, 4), density=True, alpha=0.6,
                    label="PIS samples")
            ax.plot(grid, np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi), "k", label="N(0, 1)")
            ax.set(title=f"funnel.yaml (d = 10): x0 marginal ({drift})", xlabel="x0")
            ax.legend()
        ax = next(axes)
        ax.scatter(truth[:, 0], truth[:, 1], s=2, alpha=0.3, color="grey", label="exact samples")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.3, color="C3", label="PIS samples")
        title = ("funnel.yaml: (x0, x1)" if name == "funnel"
                 else "ps.yaml (nine.yaml): 2-D three-mode mixture")
        ax.set(title=f"{title} ({drift})", xlabel="x0", ylabel="x1")
        if name == "funnel":
            ax.set(xlim=(-4, 4), ylim=(-8, 8))
        else:
            ax.set_aspect("equal")
        ax.legend(markerscale=4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, help="for every target (default: upstream's)")
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--drifts", nargs="+", default=["grad", "f"], choices=["grad", "f"],
                        help="grad: PIS-Grad (upstream's t_tnet_grad), f: PIS-NN")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 30 iterations, 1000 samples")
    parser.add_argument("--figure", default=FIGURE)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.samples = 1, 1000
        args.iterations = args.iterations or 30
    iterations = {name: args.iterations or ITERATIONS[name] for name in args.targets}
    rule = PIORule(trajectories=args.trajectories)
    print(f"PIS ({'/'.join(args.drifts)} drift, {args.trajectories} trajectories, Adam lr {args.lr}, "
          f"dt {rule.dt}, t_end {rule.t_end}, g {rule.diffusion:.3f}); {args.seeds} seeds; "
          f"{args.samples} trajectories for the estimates\n")
    results = {}
    for name in args.targets:
        target = TARGETS[name]()
        for drift in args.drifts:
            rule = PIORule(drift_format=drift, trajectories=args.trajectories)
            runs = [run_target(target, rule, iterations[name], args.lr, seed, args.samples)
                    for seed in range(args.seeds)]
            results[name, drift] = (target, runs)
    print(table(results, iterations))
    plot(results, args.figure)
    print(f"\nfigure: {os.path.relpath(args.figure)}")
    return results


if __name__ == "__main__":
    main()

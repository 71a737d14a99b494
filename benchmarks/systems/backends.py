"""TensorFlow against JAX on this machine: do they compute the same thing, and how fast?

    python -m benchmarks.systems.backends [--data DIR] [--truncations 10] [--rounds 3]
        [--jax-xla-flags=FLAGS ...] [--speed-only]

(a) Agreement: ``tests/backend_probe.py`` (the arrays ``tests/test_backends.py`` compares)
    runs once under each backend, each in its own process, and the largest relative
    difference of each group of arrays is printed: the DM, ScaleHierarchical, RNNProp and
    NormalizedMLP TBPTT meta-gradients, the ES and PES estimates, PIO's drift and its
    gradient, the initial meta-weights; and, per backend, the float64 TBPTT gradient's
    largest relative error against central finite differences.
(b) Speed: TBPTT meta-training of the reference config (DM 20-20 on the MLP 784-20-10
    sigmoid, MNIST, batch 128, unroll 20) through the MetaTrainer, inner steps per second
    on each backend, the two measured in alternating child processes (``--rounds``
    rounds of ``--truncations`` truncations after one that compiles) so that the
    machine's load falls on both; the median per backend and their ratio. With
    ``--jax-xla-flags``, JAX again under each ``XLA_FLAGS`` value given (XLA's CPU options).
MNIST is the IDX folder ``DIR/mnist`` (``--data``, default ``$L2O_DATA``, as l2o resolves
``dataset: mnist``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, data_root

PROBE = os.path.join(ROOT, "tests", "backend_probe.py")
BACKENDS = ("tensorflow", "jax")
UNROLL = 20
# The reference TBPTT config of benchmarks/systems/meta_training_throughput.py, less its data.
REFERENCE = ["problems/0/kwargs/layers=[20]", "problems/0/kwargs/activation=sigmoid",
             "problems/0/kwargs/batch_size=128", "network/layers=[20, 20]",
             f"strategy/unroll_distribution={UNROLL}", "training/depth=1", "training/epochs=1"]
GROUPS = ("DM/initial/", "DM/tbptt/grad", "ScaleHierarchical/tbptt/grad", "RNNProp/tbptt/grad",
          "NormalizedMLP/tbptt/grad", "es/grad", "pes/grad", "pio/f/", "pio/grad/")


def child_environment(backend):
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}


def relative_difference(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def agreement():
    """Markdown rows: each group's largest TF-JAX relative difference, then the FD errors."""
    import numpy as np

    arrays = {}
    with tempfile.TemporaryDirectory() as folder:
        for backend in BACKENDS:
            path = os.path.join(folder, f"{backend}.npz")
            subprocess.run([sys.executable, PROBE, path], env=child_environment(backend),
                           check=True, cwd=ROOT)
            arrays[backend] = dict(np.load(path))
    tensorflow, jax = arrays["tensorflow"], arrays["jax"]
    rows = ["| arrays | largest relative difference, TF against JAX (float32) |",
            "| --- | --- |"]
    for group in GROUPS:
        names = [name for name in tensorflow if name.startswith(group)]
        worst = max(relative_difference(jax[name], tensorflow[name]) for name in names)
        rows.append(f"| {group.rstrip('/')} ({len(names)} arrays) | {worst:.1e} |")
    rows += ["", ("| backend | float64 TBPTT gradient against central differences, "
                  "largest relative error |"), "| --- | --- |"]
    for backend in BACKENDS:
        exact, finite = arrays[backend]["fd/exact"], arrays[backend]["fd/finite"]
        rows.append(f"| {backend} | {relative_difference(exact, finite):.1e} |")
    return rows


def speed_child(data, truncations):
    """In a child process: inner steps/s of ``truncations`` truncations after one that
    compiles, printed as JSON."""
    from l2o.config import resolve
    from l2o.trainer import MetaTrainer

    trainer = MetaTrainer(resolve({}, REFERENCE + [
        f"problems/0/kwargs/dataset={os.path.join(data, 'mnist')}"]))
    trainer.train_epoch(0, 0, lambda generator: UNROLL)
    started = time.perf_counter()
    for epoch in range(1, truncations + 1):
        trainer.train_epoch(0, epoch, lambda generator: UNROLL)
    print(json.dumps({"rate": truncations * UNROLL / (time.perf_counter() - started)}))


def speed(data, truncations, rounds, jax_xla_flags=()):
    """Markdown rows: each backend's median inner steps/s over alternating child runs; JAX
    once more under each of ``jax_xla_flags`` (an ``XLA_FLAGS`` value each)."""
    import numpy as np

    routes = {backend: child_environment(backend) for backend in BACKENDS}
    for flags in jax_xla_flags:
        environment = child_environment("jax")
        environment["XLA_FLAGS"] = f"{environment.get('XLA_FLAGS', '')} {flags}".strip()
        routes[f"jax, XLA_FLAGS={flags}"] = environment
    rates = {route: [] for route in routes}
    for _ in range(rounds):
        for route, environment in routes.items():
            completed = subprocess.run(
                [sys.executable, "-m", "benchmarks.systems.backends", "--speed-child", "--data", data,
                 "--truncations", str(truncations)], env=environment,
                capture_output=True, text=True, check=True, cwd=ROOT)
            rates[route].append(json.loads(completed.stdout.strip().splitlines()[-1])["rate"])
    medians = {route: float(np.median(values)) for route, values in rates.items()}
    rows = ["| backend | inner steps / s (median) | each round | ratio to TensorFlow |",
            "| --- | --- | --- | --- |"]
    for route, median in medians.items():
        each = ", ".join(f"{rate:.1f}" for rate in rates[route])
        rows.append(f"| {route} | {median:.1f} | {each} | "
                    f"{median / medians['tensorflow']:.2f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=data_root(),
                        help="folder holding mnist/ (IDX files); default $L2O_DATA")
    parser.add_argument("--truncations", type=int, default=10, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jax-xla-flags", action="append", default=[], metavar="FLAGS",
                        help="also time JAX with this XLA_FLAGS value (repeatable; give it "
                             "with =, e.g. --jax-xla-flags=--xla_cpu_use_thunk_runtime=false)")
    parser.add_argument("--speed-only", action="store_true", help="skip (a), the agreement")
    parser.add_argument("--speed-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_child:
        speed_child(args.data, args.truncations)
        return
    if args.data is None:
        parser.error("no data folder: set L2O_DATA or pass --data DIR (a folder holding mnist/)")
    if not args.speed_only:
        print("(a) The same config and seed on both backends (tests/backend_probe.py)\n")
        print("\n".join(agreement()))
    print(f"\n(b) TBPTT meta-training, reference config: {args.rounds} alternating rounds of "
          f"{args.truncations} truncations of {UNROLL} steps per backend\n")
    print("\n".join(speed(args.data, args.truncations, args.rounds, args.jax_xla_flags)))


if __name__ == "__main__":
    main()

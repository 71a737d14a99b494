"""What a learned optimiser costs in ``model.fit``: milliseconds per step and state bytes per parameter, against Adam.

    KERAS_BACKEND=tensorflow python -m benchmarks.systems.step_cost [--models mlp_784_128_128 ...]
        [--optimizers adam pretrained ...] [--runs NAME=DIR ...] [--steps 40] [--rounds 3]
        [--jit-compile off on]

Every optimiser trains every model with ``model.fit`` on the same synthetic batches (the cost
of a step does not depend on the data), ``--steps`` steps a round, in ``--rounds`` rounds
interleaved over the optimisers in one process (one untimed round first, which compiles); the
table gives the median milliseconds per step and its ratio to Adam's on the same model in the
same run. The models span 10k to 10M parameters: MLPs on 28x28 inputs, a small CNN, a
Transformer block over token embeddings, and a bag-of-words model whose 10M-parameter
``Embedding`` gets sparse gradients on TensorFlow.

State bytes per parameter: the bytes of every per-parameter slot the optimiser keeps after
building (Adam: m and v, 8 bytes), over the model's trainable parameters; the scalars every
Keras optimiser keeps (step count, learning rate) and a learned optimiser's meta-weights
(fixed in size, whatever the model: given in their own column) are not per parameter.

FLOPs per coordinate (the NormalizedMLP rules): the multiply-adds of its per-coordinate
network, doubled; the achieved rate is those FLOPs over every parameter divided by the step
time beyond Adam's, set against the machine's rate for the skinny matrix products such a
network runs (about 55 GFLOP/s on this 2-core CPU with TensorFlow, 168 for square products).
"""

import argparse
import itertools
import os
import time

import keras
import numpy as np

import l2o
from l2o import optimizers as learned

SKINNY_GFLOPS = 55.0


def mlp(hidden):
    def build():
        layers = [keras.Input((784,))] + [keras.layers.Dense(units, "relu") for units in hidden]
        return keras.Sequential(layers + [keras.layers.Dense(10)])
    return build, lambda generator, n: (generator.normal(size=(n, 784)).astype("float32"),
                                        generator.integers(0, 10, n))


def cnn():
    def build():
        return keras.Sequential([
            keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)])
    return build, lambda generator, n: (
        generator.normal(size=(n, 28, 28, 1)).astype("float32"), generator.integers(0, 10, n))


def tokens(vocabulary, length):
    return lambda generator, n: (generator.integers(0, vocabulary, (n, length)),
                                 generator.integers(0, 10, n))


def transformer(vocabulary=2000, length=64, width=128, heads=4):
    def build():
        inputs = keras.Input((length,), dtype="int32")
        x = keras.layers.Embedding(vocabulary, width)(inputs)
        attended = keras.layers.MultiHeadAttention(heads, width // heads)(x, x)
        x = keras.layers.LayerNormalization()(x + attended)
        hidden = keras.layers.Dense(4 * width, "gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(width)(hidden))
        pooled = keras.layers.GlobalAveragePooling1D()(x)
        return keras.Model(inputs, keras.layers.Dense(10)(pooled))
    return build, tokens(vocabulary, length)


def bag_of_words(vocabulary=156_250, width=64, length=32):
    def build():
        return keras.Sequential([keras.Input((length,), dtype="int32"),
                                 keras.layers.Embedding(vocabulary, width),
                                 keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(10)])
    return build, tokens(vocabulary, length)


MODELS = {
    "mlp_784_12": mlp([12]),
    "mlp_784_128_128": mlp([128, 128]),
    "cnn_16_32": cnn(),
    "transformer_block": transformer(),
    "mlp_784_2048_2048": mlp([2048, 2048]),
    "embedding_10m": bag_of_words(),
}

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "pretrained": lambda: l2o.load_optimizer("pretrained"),
    "NormalizedMLP": learned.NormalizedMLPOptimizer,
    "ControlledAdam": learned.ControlledAdamOptimizer,
    "DM": learned.DMOptimizer,
    "RNNProp": learned.RNNPropOptimizer,
    "ScaleBasic": learned.ScaleBasicOptimizer,
    "ScaleHierarchical": learned.ScaleHierarchicalOptimizer,
    "ScheduledSGD": learned.ScheduledSGD,
}


def per_coordinate_flops(optimizer):
    """2 x the multiply-adds of a NormalizedMLP rule's per-coordinate network; None for others."""
    rule = getattr(optimizer, "rule", None)
    if not isinstance(rule, learned.NormalizedMLPRule):
        return None
    sizes = [rule.feature_count, *rule.hidden_layers, 2]
    return 2 * sum(a * b for a, b in itertools.pairwise(sizes))


def state_bytes(optimizer):
    """(bytes of per-parameter slots, bytes of meta-weights) of a built optimiser."""
    meta = {id(v) for v in getattr(optimizer, "_meta_slots", {}).values()}
    slots = meta_bytes = 0
    for variable in optimizer.variables:
        size = int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize
        if id(variable) in meta:
            meta_bytes += size
        elif len(variable.shape) > 0:
            slots += size
    return slots, meta_bytes


class Run:
    """One (model, optimiser) pair, compiled and traced, timed a round at a time."""

    def __init__(self, model_name, optimizer_name, steps, batch, jit_compile):
        build, data = MODELS[model_name]
        keras.utils.set_random_seed(0)
        self.model = build()
        self.optimizer = OPTIMIZERS[optimizer_name]()
        self.model.compile(optimizer=self.optimizer, jit_compile=jit_compile,
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.inputs, self.labels = data(np.random.default_rng(0), steps * batch)
        self.batch, self.steps = batch, steps
        self.round()  # traces and builds the optimiser

    def round(self):
        started = time.perf_counter()
        self.model.fit(self.inputs, self.labels, batch_size=self.batch, epochs=1, verbose=0,
                       shuffle=False)
        return 1000 * (time.perf_counter() - started) / self.steps

    def parameters(self):
        return sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)


def measure(model_name, optimizer_names, steps, rounds, batch, jit_compile):
    runs = {name: Run(model_name, name, steps, batch, jit_compile) for name in optimizer_names}
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run.round())
    return runs, {name: float(np.median(values)) for name, values in times.items()}


def table(model_name, runs, times):
    adam = times.get("adam")
    lines = [f"#### {model_name}", ""]
    some = next(iter(runs.values()))
    lines.append(f"{some.parameters():,} trainable parameters, batch {some.batch}.")
    lines += ["", ("| optimiser | ms/step | / Adam | state bytes/param | meta-weights (bytes) "
                   f"| FLOPs/coordinate | update GFLOP/s (of ~{SKINNY_GFLOPS:.0f}) |"),
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in runs.items():
        slots, meta = state_bytes(run.optimizer)
        flops = per_coordinate_flops(run.optimizer)
        rate = ""
        if flops and adam and times[name] > adam:
            rate = f"{flops * run.parameters() / ((times[name] - adam) * 1e-3) / 1e9:.1f}"
        ratio = f"{times[name] / adam:.2f}" if adam else ""
        lines.append(f"| {name} | {times[name]:.2f} | {ratio} | {slots / run.parameters():.1f} "
                     f"| {meta:,} | {flops or ''} | {rate} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS),
                        choices=list(OPTIMIZERS))
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--jit-compile", nargs="+", default=["off"], choices=["off", "on"])
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=DIR",
                        help="also time the learned optimiser of each run directory (its best "
                             "checkpoint)")
    args = parser.parse_args(argv)
    names = list(args.optimizers)
    for entry in args.runs:
        name, separator, directory = entry.partition("=")
        if not separator or not name or not directory or name in OPTIMIZERS:
            parser.error(f"--runs {entry}: expected NAME=DIR with a new NAME")
        OPTIMIZERS[name] = lambda directory=directory: l2o.load_optimizer(directory)
        OPTIMIZERS[name]()  # a bad directory stops here, before anything is timed
        names.append(name)
    print(f"backend {keras.backend.backend()}, TF_NUM_INTRAOP_THREADS="
          f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'unset')}; median of {args.rounds} "
          f"interleaved rounds of {args.steps} steps\n")
    for jit in args.jit_compile:
        print(f"### jit_compile {jit}\n")
        for model_name in args.models:
            runs, times = measure(model_name, names, args.steps, args.rounds,
                                  args.batch, jit == "on")
            print(table(model_name, runs, times) + "\n", flush=True)


if __name__ == "__main__":
    main()

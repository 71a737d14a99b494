"""Meta-training and model.fit speed under Keras's JAX backend, on every platform JAX finds.

    KERAS_BACKEND=jax python -m benchmarks.systems.gpu [--quick] [--data DIR] [--out FILE]
        [--parts abc] [--particles N ...] [--cpu-particles N ...]

TensorFlow is not needed (the GPU machine has none). All numbers come from one process,
each the median of interleaved rounds after one untimed call that compiles.

(a) TBPTT meta-training of the reference config (DM 20-20 on the MLP 784-20-10 sigmoid,
    MNIST, batch 128, unroll 20, Adam meta-update) through the toolkit's MetaTrainer
    next to a hand-written JAX version of the same maths: the unroll a ``lax.scan``,
    the meta-gradient by ``jax.value_and_grad`` through it (second order), Keras's
    Adam written out, everything in one ``jax.jit`` call per truncation. Both wait for
    each truncation's result, as the trainer must (it decides restarts from it). Inner
    steps per second and their ratio; and the largest relative difference between the
    two meta-gradients (per tensor, ||a - b|| / ||b||) from the same meta-weights,
    parameters and batches (float32 matrix products), so that the two are seen to
    compute the same thing.
(b) PES on the same problem: truncations of all N particles at once through the
    toolkit's PES estimator (lockstep, so the particles share each batch), particles x
    inner steps per second, for each N on the default device (a GPU when there is one)
    and on the CPU (``jax.default_device``). N = 4096 holds some 20 GB of LSTM states:
    ``--cpu-particles 8 64 512`` spares a CPU the largest size.
(c) model.fit milliseconds per step of the learned optimisers with fresh meta-weights
    (DM, RNNProp, ScaleHierarchical) against Keras's Adam, on an MLP 784-1024-1024-10
    (ReLU) at batch 1024 and a small CNN (Keras's MNIST convnet without dropout) at
    batch 1024, fed random data of MNIST's shape.

MNIST is the IDX folder ``DIR/mnist`` (``--data``, default ``$L2O_DATA``, as l2o resolves
``dataset: mnist``); without it (a) and (b) run on random images of MNIST's shape, and the
output says so. ``--quick`` shrinks everything (MNIST resized to 8x8, unroll 5, N in
{8, 64}, MLP 784-64-10 and a tiny CNN at batch 128) to run in under a minute on two CPU
cores. The tables go to stdout and to ``--out`` as markdown.
"""

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import keras
import numpy as np

from benchmarks.common import data_root, median_times, out_path
from l2o import problems
from l2o.config import resolve
from l2o.optimizers import DMOptimizer, RNNPropOptimizer, ScaleHierarchicalOptimizer
from l2o.problems.datasets import DataError, load
from l2o.registry import OPTIMIZERS
from l2o.trainer import MetaTrainer

# The reference TBPTT config of benchmarks/systems/meta_training_throughput.py, less its data
# and unroll.
REFERENCE = ["problems/0/kwargs/layers=[20]", "problems/0/kwargs/activation=sigmoid",
             "problems/0/kwargs/batch_size=128", "network/layers=[20, 20]",
             "training/depth=1", "training/epochs=1"]
FULL = {"unroll": 20, "truncations": 20, "rounds": 5, "particles": [8, 64, 512, 4096],
        "pes_rounds": 5, "fit_steps": 50, "fit_rounds": 3, "image_size": None,
        "mlp": [1024, 1024], "batch": 1024, "cnn": "mnist_convnet"}
QUICK = {"unroll": 5, "truncations": 2, "rounds": 2, "particles": [8, 64], "pes_rounds": 2,
         "fit_steps": 5, "fit_rounds": 2, "image_size": 8,
         "mlp": [64], "batch": 128, "cnn": "tiny"}


# ---------------------------------------------------------------------------------- data


def mnist_folder(root, scratch):
    """``(folder, description)``: MNIST's IDX folder under ``root`` (None: no data folder),
    else random images and labels of MNIST's shape written as IDX files into ``scratch``."""
    folder = None if root is None else os.path.join(os.path.abspath(root), "mnist")
    if folder is not None:
        try:
            load(folder)
            return folder, f"MNIST from {folder}"
        except DataError:
            pass
    generator = np.random.default_rng(0)
    arrays = {"t10k-images-idx3-ubyte": generator.integers(0, 256, (10000, 28, 28), np.uint8),
              "t10k-labels-idx1-ubyte": generator.integers(0, 10, 10000, np.uint8)}
    for name, array in arrays.items():
        header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
            size.to_bytes(4, "big") for size in array.shape)
        with open(os.path.join(scratch, name), "wb") as handle:
            handle.write(header + array.tobytes())
    where = folder if folder is not None else "$L2O_DATA/mnist: L2O_DATA is not set"
    return scratch, f"random images of MNIST's shape (no MNIST IDX files in {where})"


def reference_config(mnist, sizes, overrides=()):
    image_size = [] if sizes["image_size"] is None else \
        [f"problems/0/kwargs/image_size={sizes['image_size']}"]
    return resolve({}, [f"problems/0/kwargs/dataset={mnist}",
                        f"strategy/unroll_distribution={sizes['unroll']}",
                        *REFERENCE, *image_size, *overrides])


def describe(config, problem):
    sizes = [int(np.prod(problem.input_shape)), *problem.layers, problem.classes]
    return (f"DM {'-'.join(map(str, config['network']['layers']))} on the MLP "
            f"{'-'.join(map(str, sizes))} {problem.activation}, batch {problem.batch_size}, "
            f"unroll {config['strategy']['unroll_distribution']}")


def device_name(device):
    if device.platform != "cpu":
        return device.device_kind
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle
                          if line.startswith("model name")), "")
    return f"CPU, {os.cpu_count()} cores{': ' + model if model else ''}"


# ---------------------------------------------------------------------------------- timing, tables


def section(title, note, columns, rows):
    """A part's markdown: its heading, a sentence on what was measured, and its table."""
    return [f"## {title}", "", note, "", "| " + " | ".join(columns) + " |",
            "|" + " --- |" * len(columns), *("| " + " | ".join(row) + " |" for row in rows)]


# ---------------------------------------------------------------------------------- (a)


def mlp_loss(params, images, labels):
    """Mean cross-entropy of the sigmoid MLP ``params`` (kernel, bias, kernel, bias, ...)."""
    hidden = images.reshape(images.shape[0], -1)
    for kernel, bias in zip(params[:-2:2], params[1:-2:2]):
        hidden = jax.nn.sigmoid(hidden @ kernel + bias)
    logits = hidden @ params[-2] + params[-1]
    picked = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def dm_update(w, grads, state, p, output_scale):
    """DM's update of every coordinate: log/sign preprocessing, the LSTM stack, a linear
    output; ``state`` is one (hidden, cell) per LSTM layer."""
    g = jnp.concatenate([v.ravel() for v in grads])
    large = jnp.abs(g) >= float(np.exp(-p))
    x = jnp.stack([jnp.where(large, jnp.log(jnp.maximum(jnp.abs(g), float(np.exp(-p)))) / p,
                             -1.0),
                   jnp.where(large, jnp.sign(g), float(np.exp(p)) * g)], axis=-1)
    new_state = []
    for layer, (h, c) in enumerate(state):
        z = (x @ w[f"lstm_{layer}/kernel"] + h @ w[f"lstm_{layer}/recurrent_kernel"]
             + w[f"lstm_{layer}/bias"])
        i, f, candidate, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(candidate)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        new_state.append((h, c))
        x = h
    return output_scale * (x @ w["output/kernel"] + w["output/bias"])[:, 0], new_state


class HandWritten:
    """DM TBPTT in plain JAX: the maths of l2o.optimizers.dm, l2o.estimators.unroll and
    tbptt for the config's sizes and constants (log meta-objective of (f + eps) / (f_0 + eps),
    mean over the unroll, second order), with Keras's Adam as the meta-optimiser.
    ``step`` is one jitted call per truncation: unroll, meta-gradient and Adam update."""

    def __init__(self, config, meta_weights):
        network, epsilon = config["network"], config["loss_args"]["epsilon"]
        self.layers = network["layers"]
        self.weights = {name: jnp.asarray(value) for name, value in meta_weights.items()}
        self.moments = jax.tree.map(lambda v: (jnp.zeros_like(v), jnp.zeros_like(v)),
                                    self.weights)
        self.iterations = jnp.zeros((), jnp.int32)
        learning_rate = config["optimizer"]["config"]["learning_rate"]

        def meta_loss(w, params, images, labels):
            splits = np.cumsum([v.size for v in params])[:-1]
            initial = mlp_loss(params, images[0], labels[0])
            state = [(jnp.zeros((sum(v.size for v in params), units)),) * 2
                     for units in self.layers]

            def step(carry, batch):
                params, state = carry
                loss, grads = jax.value_and_grad(mlp_loss)(params, *batch)
                update, state = dm_update(w, grads, state, network["preprocess_p"],
                                          network["output_scale"])
                params = [v + u.reshape(v.shape)
                          for v, u in zip(params, jnp.split(update, splits))]
                return (params, state), loss

            _, losses = jax.lax.scan(step, (params, state), (images, labels))
            return jnp.mean(jnp.log((losses + epsilon) / (initial + epsilon)))

        gradient = jax.value_and_grad(meta_loss)

        def step(w, moments, iterations, params, images, labels):
            value, grads = gradient(w, params, images, labels)
            w, moments, iterations = adam(w, moments, iterations, grads, learning_rate)
            return w, moments, iterations, value

        self.meta_gradient = jax.jit(gradient)
        self._step = jax.jit(step)

    def step(self, params, images, labels):
        """One truncation from ``params`` over the batches; returns the meta-loss."""
        self.weights, self.moments, self.iterations, value = self._step(
            self.weights, self.moments, self.iterations, params, images, labels)
        return value


def adam(w, moments, iterations, grads, learning_rate, beta_1=0.9, beta_2=0.999,
         epsilon=1e-7):
    """Keras's Adam (its defaults; epsilon outside the bias correction)."""
    t = (iterations + 1).astype(jnp.float32)
    alpha = learning_rate * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    new_w, new_moments = {}, {}
    for name, value in w.items():
        m, v = moments[name]
        m = m + (grads[name] - m) * (1 - beta_1)
        v = v + (jnp.square(grads[name]) - v) * (1 - beta_2)
        new_w[name], new_moments[name] = value - alpha * m / (jnp.sqrt(v) + epsilon), (m, v)
    return new_w, new_moments, iterations + 1


def handwritten_runner(config, truncations):
    """``run(round)``: ``truncations`` truncations of the hand-written version, each from a
    fresh inner run on its own batches, as the toolkit's runner below."""
    problem = problems.build(config["problems"][0])
    meta_weights = OPTIMIZERS.lookup("constructor", config["constructor"]).initial_meta_weights(
        config, [problem])
    reference, length = HandWritten(config, meta_weights), config["strategy"]["unroll_distribution"]

    def run(index):
        for epoch in range(index * truncations, (index + 1) * truncations):
            images, labels = problem.batches(epoch, 0, length)
            reference.step([jnp.asarray(v) for v in problem.init(epoch)], images,
                           labels).block_until_ready()

    return run


def toolkit_runner(config, truncations):
    """``run(round)``: ``truncations`` truncations through ``MetaTrainer.train_epoch``
    (as meta_training_throughput.py's ``toolkit``)."""
    trainer, length = MetaTrainer(config), config["strategy"]["unroll_distribution"]

    def run(index):
        for epoch in range(index * truncations, (index + 1) * truncations):
            trainer.train_epoch(0, epoch, lambda generator: length)

    return run


def gradient_difference(config, seed=0):
    """Largest relative difference (per tensor, ||a - b|| / ||b||) between the toolkit's
    TBPTT meta-gradient and the hand-written one, from the same meta-weights, parameters
    and batches (trajectory ``seed``), with float32 matrix products (a GPU's default, TF32,
    would differ by more than the two implementations do)."""
    with jax.default_matmul_precision("float32"):
        trainer, length = MetaTrainer(config), config["strategy"]["unroll_distribution"]
        estimator, problem = trainer.estimators[0], trainer.problems[0]
        estimate, _ = estimator.compute_gradient_estimate(estimator.init_worker_state(seed),
                                                          None, length)
        reference = HandWritten(config, trainer.meta_weights())
        images, labels = problem.batches(seed, 0, length)
        _, grads = reference.meta_gradient(reference.weights,
                                           [jnp.asarray(v) for v in problem.init(seed)],
                                           images, labels)
        return max(float(np.linalg.norm(np.asarray(grads[name]) - keras.ops.convert_to_numpy(g))
                         / np.linalg.norm(keras.ops.convert_to_numpy(g)))
                   for name, g in zip(trainer.meta_variables, estimate.grads))


def part_a(mnist, sizes):
    config = reference_config(mnist, sizes)
    length, truncations = sizes["unroll"], sizes["truncations"]
    difference = gradient_difference(config)
    seconds = median_times({"hand-written jax.jit + lax.scan": handwritten_runner(config,
                                                                                 truncations),
                           "l2o MetaTrainer.train_epoch": toolkit_runner(config, truncations)},
                          sizes["rounds"])
    reference = seconds["hand-written jax.jit + lax.scan"]
    note = (f"{describe(config, problems.build(config['problems'][0]))}; median of "
            f"{sizes['rounds']} interleaved rounds of {truncations} truncations. Meta-gradients "
            f"of the two from the same start: largest relative difference {difference:.1e}.")
    return section(f"(a) TBPTT meta-training on {device_name(jax.devices()[0])}", note,
                   ["implementation", "inner steps / s", "ratio to hand-written"],
                   [(name, f"{truncations * length / s:.1f}", f"{reference / s:.2f}")
                    for name, s in seconds.items()])


# ---------------------------------------------------------------------------------- (b)


def pes_runner(mnist, sizes, particles):
    """``run(round)``: one PES truncation of ``particles`` particles through the toolkit's
    estimator (as pes_throughput.py)."""
    config = reference_config(mnist, sizes, [
        "estimator_constructor=pes", f"estimator/n_particles={particles}",
        "estimator/stagger=lockstep", "estimator/horizon=null"])
    trainer = MetaTrainer(config)
    estimator = trainer.estimators[0]
    population = estimator.init_worker_state(0)
    theta = estimator.truncations.flatten(trainer.meta_weights())

    def run(index):
        gradient, _ = population.estimate(theta, np.random.default_rng(index), sizes["unroll"])
        assert np.all(np.isfinite(gradient)), "PES estimate not finite"

    return run


def part_b(mnist, sizes, devices):
    config = reference_config(mnist, sizes)
    length = sizes["unroll"]
    rows = []
    for device, particles in devices.items():
        with jax.default_device(device):
            seconds = median_times({n: pes_runner(mnist, sizes, n) for n in particles},
                                  sizes["pes_rounds"])
        rows += [(device_name(device), str(n), f"{s:.3f}", f"{n * length / s:.0f}")
                 for n, s in seconds.items()]
    note = (f"{describe(config, problems.build(config['problems'][0]))}; PES truncations of "
            f"K = {length} steps, particles in lockstep; median of {sizes['pes_rounds']} "
            f"truncations.")
    return section(f"(b) PES throughput on {', '.join(device_name(d) for d in devices)}",
                   note, ["device", "particles N", "s per truncation",
                          "particles x inner steps / s"], rows)


# ---------------------------------------------------------------------------------- (c)


def models(sizes):
    """{description: builder} of the models whose model.fit is timed."""
    layers = keras.layers

    def mlp():
        return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten()]
                                + [layers.Dense(units, activation="relu")
                                   for units in sizes["mlp"]] + [layers.Dense(10)])

    def cnn():
        if sizes["cnn"] == "tiny":
            body = [layers.Conv2D(8, 3, strides=2, activation="relu"),
                    layers.Conv2D(16, 3, strides=2, activation="relu"),
                    layers.GlobalAveragePooling2D()]
        else:
            body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                    layers.Flatten()]
        return keras.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(10)])

    cnn_name = ("CNN conv 8-16 (stride 2), global pool" if sizes["cnn"] == "tiny"
                else "CNN conv 32-pool-64-pool (Keras MNIST convnet)")
    return {f"MLP 784-{'-'.join(map(str, sizes['mlp']))}-10 ReLU": mlp, cnn_name: cnn}


OPTIMISERS = {"Adam": lambda: keras.optimizers.Adam(0.001), "DMOptimizer": DMOptimizer,
              "RNNPropOptimizer": RNNPropOptimizer,
              "ScaleHierarchicalOptimizer": ScaleHierarchicalOptimizer}


def fit_runner(build, make_optimizer, images, labels, batch):
    model = build()
    model.compile(optimizer=make_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def run(index):
        model.fit(images, labels, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    return run


def part_c(sizes):
    batch, steps = sizes["batch"], sizes["fit_steps"]
    generator = np.random.default_rng(0)
    images = generator.uniform(size=(steps * batch, 28, 28, 1)).astype(np.float32)
    labels = generator.integers(0, 10, steps * batch).astype(np.int32)
    rows = []
    for name, build in models(sizes).items():
        seconds = median_times({optimiser: fit_runner(build, make, images, labels, batch)
                               for optimiser, make in OPTIMISERS.items()}, sizes["fit_rounds"])
        rows += [(name, optimiser, f"{1000 * s / steps:.2f}", f"{s / seconds['Adam']:.2f}")
                 for optimiser, s in seconds.items()]
    note = (f"Batch {batch}, random data of MNIST's shape (timing only); median of "
            f"{sizes['fit_rounds']} interleaved epochs of {steps} steps. Learned optimisers "
            f"with fresh meta-weights.")
    return section(f"(c) model.fit on {device_name(jax.devices()[0])}", note,
                   ["model", "optimiser", "ms / step", "ratio to Adam"], rows)


# ---------------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, seconds on a CPU (a smoke test of the script)")
    parser.add_argument("--data", default=data_root(),
                        help="folder holding mnist/ (IDX files); default $L2O_DATA")
    parser.add_argument("--out", default=out_path("gpu.md"))
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. 'ab'")
    parser.add_argument("--particles", type=int, nargs="+", help="PES sizes on the default device")
    parser.add_argument("--cpu-particles", type=int, nargs="+",
                        help="PES sizes on the CPU when the default device is not (default: "
                             "--particles)")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        parser.exit(2, f"error: KERAS_BACKEND is {keras.backend.backend()!r}; this benchmark "
                       f"runs on JAX: KERAS_BACKEND=jax python -m benchmarks.systems.gpu\n")
    sizes = dict(QUICK if args.quick else FULL)
    particles = args.particles or sizes["particles"]
    default, cpu = jax.devices()[0], jax.devices("cpu")[0]
    devices = {default: particles}
    if default.platform != "cpu":
        devices[cpu] = args.cpu_particles or particles
    with tempfile.TemporaryDirectory() as scratch:
        mnist, data = mnist_folder(args.data, scratch)
        lines = [f"# l2o on JAX {jax.__version__} (Keras {keras.__version__}), "
                 + ("--quick sizes" if args.quick else "full sizes"), "",
                 f"Data for (a) and (b): {data}.", ""]
        print("\n".join(lines), flush=True)
        for part, make in (("a", lambda: part_a(mnist, sizes)),
                           ("b", lambda: part_b(mnist, sizes, devices)),
                           ("c", lambda: part_c(sizes))):
            if part in args.parts:
                table = make() + [""]
                print("\n".join(table), flush=True)
                lines += table
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

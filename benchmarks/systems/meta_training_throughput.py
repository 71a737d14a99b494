"""Speed: meta-training throughput and DMOptimizer's step time in model.fit.

    python -m benchmarks.systems.meta_training_throughput [--truncations 30] [--fit-steps 300]

(a) Inner steps per second (median of interleaved rounds) of TBPTT meta-training on the reference config
    (MLP 784-20-10 sigmoid on MNIST from ``$L2O_DATA/mnist``, batch 128, unroll 20,
    DM 20-20), through
    the toolkit's MetaTrainer with jit_compile off and on, next to a minimal
    hand-written tf.function of the same maths (python-unrolled loop, nested
    GradientTapes, Adam meta-update inside the graph) fed the same batches.
(b) Milliseconds per step of model.fit with DMOptimizer and with Adam on the
    same model and data.
All numbers come from one process, measured back to back.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from l2o.config import resolve
from l2o.optimizers import DMOptimizer
from l2o.trainer import MetaTrainer

UNROLL = 20
REFERENCE = ["problems/0/kwargs/dataset=mnist", "problems/0/kwargs/layers=[20]",
             "problems/0/kwargs/activation=sigmoid", "problems/0/kwargs/batch_size=128",
             "network/layers=[20, 20]", f"strategy/unroll_distribution={UNROLL}",
             "training/depth=1", "training/epochs=1"]


def toolkit(jit_compile):
    """``run(epoch)``: one truncation through the toolkit's MetaTrainer."""
    trainer = MetaTrainer(resolve({}, REFERENCE + [f"training/jit_compile={jit_compile}"]))
    return lambda epoch: trainer.train_epoch(0, epoch, lambda generator: UNROLL)


def handwritten():
    """The same meta-training step written directly against TensorFlow."""
    trainer = MetaTrainer(resolve({}, REFERENCE))
    problem = trainer.problems[0]
    initial = trainer.meta_weights()
    weights = [tf.Variable(v) for v in initial.values()]
    w = dict(zip(initial, weights))
    adam = keras.optimizers.Adam(0.001)
    adam.build(weights)
    p = 10.0

    def mlp_loss(params, x, y):
        hidden = tf.sigmoid(tf.reshape(x, (128, -1)) @ params[0] + params[1])
        logits = hidden @ params[2] + params[3]
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    def lstm(x, h, c, k):
        z = x @ w[f"lstm_{k}/kernel"] + h @ w[f"lstm_{k}/recurrent_kernel"] + w[f"lstm_{k}/bias"]
        i, f, g, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    @tf.function
    def truncation(params, state, xs, ys, initial):
        with tf.GradientTape() as outer:
            total = 0.0
            for t in range(UNROLL):
                with tf.GradientTape() as inner:
                    inner.watch(params)
                    loss = mlp_loss(params, xs[t], ys[t])
                grads = inner.gradient(loss, params)
                g = tf.concat([tf.reshape(v, [-1]) for v in grads], 0)
                big = tf.abs(g) >= np.exp(-p)
                features = tf.stack([
                    tf.where(big, tf.math.log(tf.maximum(tf.abs(g), np.exp(-p))) / p, -1.0),
                    tf.where(big, tf.sign(g), np.exp(p) * g)], -1)
                (h0, c0), (h1, c1) = state
                h0, c0 = lstm(features, h0, c0, 0)
                h1, c1 = lstm(h0, h1, c1, 1)
                state = ((h0, c0), (h1, c1))
                step = 0.1 * (h1 @ w["output/kernel"] + w["output/bias"])[:, 0]
                pieces = tf.split(step, [int(np.prod(v.shape)) for v in params])
                params = [v + tf.reshape(s, v.shape) for v, s in zip(params, pieces)]
                total += tf.math.log(loss / initial)
            meta_loss = total / UNROLL
        adam.apply(outer.gradient(meta_loss, weights), weights)
        return params, state, meta_loss

    def run(epoch):
        params = [tf.constant(v) for v in problem.init(epoch)]
        n = sum(int(np.prod(v.shape)) for v in params)
        state = tuple((tf.zeros((n, 20)), tf.zeros((n, 20))) for _ in range(2))
        xs, ys = problem.batches(epoch, 0, UNROLL)
        initial = mlp_loss(params, xs[0], ys[0])
        truncation(params, state, tf.constant(xs), tf.constant(ys), initial)

    return run


def rates(runners, truncations, rounds):
    """Inner steps/s of each runner: median over ``rounds`` interleaved rounds."""
    for run in runners.values():
        run(0)  # traces and compiles
    samples = {name: [] for name in runners}
    for round_index in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            for epoch in range(truncations):
                run(1 + round_index * truncations + epoch)
            samples[name].append(truncations * UNROLL / (time.perf_counter() - started))
    return {name: float(np.median(values)) for name, values in samples.items()}


def fit_step_ms(make_optimizer, steps):
    trainer = MetaTrainer(resolve({}, REFERENCE))
    problem = trainer.problems[0]
    images, labels = problem.batches(0, 0, steps)
    images, labels = images.reshape((-1,) + problem.input_shape), labels.reshape(-1)
    model = problem.build_model(problem.init(0))
    model.compile(optimizer=make_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=128, epochs=1, verbose=0)  # traces
    started = time.perf_counter()
    model.fit(images, labels, batch_size=128, epochs=1, verbose=0)
    return 1000 * (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truncations", type=int, default=20, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fit-steps", type=int, default=300)
    args = parser.parse_args()
    measured = rates({"hand-written tf.function": handwritten(),
                      "l2o MetaTrainer, jit_compile=false": toolkit(False),
                      "l2o MetaTrainer, jit_compile=true": toolkit(True)},
                     args.truncations, args.rounds)
    print(f"(a) TBPTT meta-training, reference config: median of {args.rounds} interleaved "
          f"rounds of {args.truncations} truncations of {UNROLL} steps\n")
    print("| implementation | inner steps / s | ratio to hand-written |\n| --- | --- | --- |")
    reference = measured["hand-written tf.function"]
    for name, rate in measured.items():
        print(f"| {name} | {rate:.1f} | {rate / reference:.2f} |")
    adam = fit_step_ms(lambda: keras.optimizers.Adam(0.001), args.fit_steps)
    dm = fit_step_ms(lambda: DMOptimizer(), args.fit_steps)
    print(f"\n(b) model.fit, MLP 784-20-10, batch 128, {args.fit_steps} steps\n")
    print("| optimiser | ms / step | ratio to Adam |\n| --- | --- | --- |")
    print(f"| Adam | {adam:.2f} | 1.00 |\n| DMOptimizer (20-20) | {dm:.2f} | {dm / adam:.2f} |")


if __name__ == "__main__":
    main()

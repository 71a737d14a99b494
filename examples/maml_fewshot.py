"""MAML few-shot classification (Finn et al. 2017, section 5.2) on an unmodified Keras model.

    python -m examples.maml_fewshot [--ways 5] [--shots 1] [--iterations 3000] [--quick]

Meta-Optim's ``maml-omniglot.py`` with ``l2o.differentiable``'s wrapper of a
Keras model: an ordinary ``keras.Sequential`` MLP, ``MetaModel(model)``,
``MetaSGD`` for the inner steps inside ``SlidingWindow(offline=True)``, and
Adam on ``window.gradient`` for the outer step, which updates the model's own
variables (MAML's initial weights).

The data set is offline: "digits-rot90", scikit-learn's 8x8 digits with each
digit at the four rotations by multiples of 90 degrees as separate classes (the
rotation augmentation Finn et al. used to multiply Omniglot's classes): 40
classes of about 180 images. Meta-training draws tasks from the 24 classes of
digits 0-5; evaluation from the 16 classes of digits 6-9, never seen in
training. (``--dataset mnist`` takes MNIST from ``$L2O_DATA/mnist`` instead;
any data set name of ``l2o.problems.datasets`` works.) A task is N classes
(``--ways``), K labelled support images per class (``--shots``) and 15 query
images per class, with the classes' labels in random order.

The model, 64 (pixels) - 64 - 64 - N with ReLU, adapts to a task by
``--inner-steps`` SGD steps (learning rate ``--inner-lr``) on the support
images; the outer loss is the query images' cross-entropy after adaptation.
Afterwards both starts adapt to 1000 held-out tasks with 0, 1, 5 and 10 SGD
steps and are scored by query accuracy:

- MAML: the meta-learnt initial weights, at ``--inner-lr``;
- no meta-learning: the weights MAML started from (Glorot-uniform, zero
  biases), at each learning rate of ``--baseline-lrs`` (and ``--inner-lr``);
  the last row takes, for each step count, the best of these on the held-out
  tasks themselves, which favours the baseline.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from l2o import backend
from l2o.differentiable import MetaModel, MetaSGD, SlidingWindow
from l2o.problems import datasets

STEPS_REPORTED = (0, 1, 5, 10)
QUERY_PER_CLASS = 15
TRAIN_DIGITS = range(6)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def rotated_classes(dataset):
    """``{(digit, quarter turns): images [n, pixels]}`` for every digit and rotation."""
    data = datasets.load(dataset)
    images = np.concatenate([data["x_train"], data["x_val"]])[..., 0]
    labels = np.concatenate([data["y_train"], data["y_val"]])
    return {(digit, turns): np.rot90(images[labels == digit], turns, axes=(1, 2)).reshape(
                (int(np.sum(labels == digit)), -1))
            for digit in range(data["classes"]) for turns in range(4)}


def sample_task(generator, classes, ways, shots):
    """``(x_support, y_support, x_query, y_query)`` of one ``ways``-way task, shuffled."""
    keys = [list(classes)[i] for i in generator.choice(len(classes), ways, replace=False)]
    support, query = [], []
    for label, key in enumerate(keys):
        images = classes[key][generator.choice(len(classes[key]), shots + QUERY_PER_CLASS,
                                               replace=False)]
        support.append((images[:shots], np.full(shots, label)))
        query.append((images[shots:], np.full(QUERY_PER_CLASS, label)))
    return tuple(array for split in (support, query) for array in
                 (np.concatenate([x for x, _ in split]).astype(np.float32),
                  np.concatenate([y for _, y in split]).astype(np.int32)))


def make_model(pixels, ways, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((pixels,)),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(ways)])


def adapted_query(net, inner, steps, x_support, y_support, x_query, y_query):
    """The query loss and accuracy after ``steps`` inner steps; the window, for its gradient."""
    with SlidingWindow(offline=True) as window:
        for _ in range(steps):
            inner.step(loss_fn(y_support, net(x_support)))
        logits = net(x_query)
        loss = loss_fn(y_query, logits)
    accuracy = ops.mean(ops.cast(ops.argmax(logits, axis=-1) == y_query, "float32"))
    return loss, accuracy, window


def meta_train(model, args, classes):
    net = MetaModel(model)
    inner = MetaSGD(net, learning_rate=args.inner_lr)
    outer_optimizer = keras.optimizers.Adam(args.meta_lr)
    variables = model.trainable_variables
    outer_optimizer.build(variables)

    def meta_step(tasks):
        """One outer step on the mean query loss of a batch of tasks."""
        losses, accuracies, grads = [], [], [ops.zeros_like(v) for v in variables]
        for task in tasks:
            loss, accuracy, window = adapted_query(net, inner, args.inner_steps, *task)
            grads = [g + t for g, t in zip(grads, window.gradient(loss, variables))]
            losses.append(loss)
            accuracies.append(accuracy)
        outer_optimizer.apply([g / len(tasks) for g in grads], variables)
        return ops.mean(ops.stack(losses)), ops.mean(ops.stack(accuracies))

    meta_step = backend.compile_fn(meta_step)
    generator = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        tasks = [sample_task(generator, classes, args.ways, args.shots)
                 for _ in range(args.meta_batch)]
        loss, accuracy = meta_step(tasks)
        if iteration % args.log_every == 0 or iteration == args.iterations:
            print(f"iteration {iteration:5d}  query loss {float(loss):.3f}  "
                  f"query accuracy {float(accuracy):.3f}  "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


def evaluate(model, starts, args, classes):
    """Held-out query accuracy ``{(start, learning rate): [(mean, 95% half-width) per step count]}``.

    Each start is scored at each of its learning rates on the same tasks.
    """
    net = MetaModel(model)
    rate = keras.Variable(args.inner_lr, name="inner_learning_rate")
    inner = MetaSGD(net, learning_rate=rate)
    scorers = {steps: backend.compile_fn(
        lambda *task, steps=steps: adapted_query(net, inner, steps, *task)[1])
        for steps in STEPS_REPORTED}
    generator = np.random.default_rng(args.seed + 1)
    tasks = [sample_task(generator, classes, args.ways, args.shots)
             for _ in range(args.test_tasks)]
    results = {}
    for label, (weights, rates) in starts.items():
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
        for learning_rate in rates:
            rate.assign(learning_rate)
            results[label, learning_rate] = []
            for steps in STEPS_REPORTED:
                accuracies = np.array([float(scorers[steps](*task)) for task in tasks])
                results[label, learning_rate].append(
                    (accuracies.mean(), 1.96 * accuracies.std(ddof=1) / np.sqrt(len(tasks))))
    return results


def print_table(results, args):
    print(f"\nheld-out {args.ways}-way {args.shots}-shot query accuracy over {args.test_tasks} "
          "tasks (mean ± 95% half-width), after SGD steps on the support set:")
    header = " | ".join(f"{steps} step{'s' if steps != 1 else ''}" for steps in STEPS_REPORTED)
    print(f"| start | {header} |")
    print("| --- |" + " --- |" * len(STEPS_REPORTED))
    for (label, learning_rate), row in results.items():
        cells = " | ".join(f"{mean:.3f} ± {half:.3f}" for mean, half in row)
        print(f"| {label}, lr {learning_rate:g} | {cells} |")
    grid = [(learning_rate, row) for (label, learning_rate), row in results.items()
            if label == "no meta-learning"]
    best = [max(((row[i], rate) for rate, row in grid), key=lambda cell: cell[0][0])
            for i in range(len(STEPS_REPORTED))]
    cells = " | ".join(f"{mean:.3f} ± {half:.3f} (lr {rate:g})" for (mean, half), rate in best)
    print(f"| no meta-learning, best lr per column | {cells} |")
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits",
                        help="digits (offline, default), mnist ($L2O_DATA/mnist), ...")
    parser.add_argument("--ways", type=int, default=5, help="N: classes per task")
    parser.add_argument("--shots", type=int, default=1, help="K: support images per class")
    parser.add_argument("--inner-steps", type=int, default=1, help="SGD steps in meta-training")
    parser.add_argument("--inner-lr", type=float, default=0.4, help="SGD learning rate")
    parser.add_argument("--meta-lr", type=float, default=1e-3, help="Adam's outer learning rate")
    parser.add_argument("--meta-batch", type=int, default=16, help="tasks per outer step")
    parser.add_argument("--iterations", type=int, default=3000, help="outer steps")
    parser.add_argument("--test-tasks", type=int, default=1000)
    parser.add_argument("--baseline-lrs", type=float, nargs="+",
                        default=[0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
                        help="learning rates the baseline is scored at (the best is reported)")
    parser.add_argument("--seed", type=int, default=0,
                        help="weights and training tasks; held-out tasks use seed + 1")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 60 iterations, 100 held-out tasks")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.test_tasks, args.log_every = 60, 100, 20
    for name in ("ways", "shots", "inner_steps", "meta_batch", "iterations", "test_tasks",
                 "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.inner_lr not in args.baseline_lrs:
        args.baseline_lrs = sorted([*args.baseline_lrs, args.inner_lr])
    try:
        classes = rotated_classes(args.dataset)
    except datasets.DataError as error:
        parser.error(str(error))
    train = {key: images for key, images in classes.items() if key[0] in TRAIN_DIGITS}
    held_out = {key: images for key, images in classes.items() if key[0] not in TRAIN_DIGITS}
    if args.ways > len(held_out):
        parser.error(f"--ways {args.ways}: the held-out split has {len(held_out)} classes")

    model = make_model(next(iter(classes.values())).shape[1], args.ways, args.seed)
    initial = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    meta_train(model, args, train)
    maml = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    results = evaluate(model, {"MAML": (maml, [args.inner_lr]),
                                "no meta-learning": (initial, args.baseline_lrs)}, args, held_out)
    print_table(results, args)
    return results


if __name__ == "__main__":
    main()

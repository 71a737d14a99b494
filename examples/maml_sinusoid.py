"""MAML on sinusoid regression (Finn et al. 2017, section 5.1) with ``l2o.differentiable``.

    python -m examples.maml_sinusoid [--iterations 70000] [--quick]

A task is y = A sin(x - phi) with amplitude A ~ U[0.1, 5] and phase
phi ~ U[0, pi], observed at x ~ U[-5, 5]. The model is an MLP 1-40-40-1 with
ReLU; a task is learnt from K = 10 examples by SGD with learning rate 0.01.
MAML meta-trains the initial weights with one inner step per task, 25 tasks
per meta-batch, the mean-squared error after adaptation on 10 fresh points as
the outer loss, and Adam (1e-3) as the meta-optimiser.

Afterwards every method adapts to the same held-out tasks (drawn from another
seed) with 1, 5 and 10 SGD steps on the K examples, and is scored by the MSE
on 100 further points of each task:

- MAML: from the meta-learnt initial weights;
- random init: from the weights MAML started from (Glorot-uniform, zero biases);
- pretrained: from a network trained by Adam (1e-3) to fit all tasks jointly,
  for as many iterations as MAML, on batches of the same tasks.
"""

import argparse
import itertools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import ops

from l2o import backend, differentiable

LAYERS = (1, 40, 40, 1)
STEPS_REPORTED = (0, 1, 5, 10)


def init_params(seed):
    initializer = keras.initializers.GlorotUniform(seed=seed)
    params = []
    for fan_in, fan_out in itertools.pairwise(LAYERS):
        params += [ops.convert_to_numpy(initializer((fan_in, fan_out))),
                   np.zeros((fan_out,), np.float32)]
    return params


def predict(params, x):
    """The MLP on ``x`` [..., n, 1]; with a leading task axis on both, task by task."""
    hidden = x
    for index in range(0, len(params), 2):
        if index:
            hidden = ops.relu(hidden)
        # expand_dims lets a bias with a task axis [tasks, units] broadcast over [tasks, n, units].
        hidden = ops.matmul(hidden, params[index]) + ops.expand_dims(params[index + 1], -2)
    return hidden


def mse(params, batch):
    """Mean squared error of each task: a scalar for one task, [tasks] for a task axis."""
    x, y = batch
    return ops.mean(ops.square(predict(params, x) - y), axis=(-2, -1))


def sample_tasks(generator, tasks, points_per_split):
    """``tasks`` sinusoids, each observed at ``points_per_split[i]`` points for split i."""
    amplitude = generator.uniform(0.1, 5.0, (tasks, 1, 1))
    phase = generator.uniform(0.0, np.pi, (tasks, 1, 1))
    splits = []
    for points in points_per_split:
        x = generator.uniform(-5.0, 5.0, (tasks, points, 1))
        splits.append((x.astype(np.float32), (amplitude * np.sin(x - phase)).astype(np.float32)))
    return splits


def meta_train(learner, pretrain_step, args):
    generator = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        support, query = sample_tasks(generator, args.meta_batch, (args.shots, args.shots))
        loss = learner.step([support], query)
        pretrain_loss = pretrain_step(tuple(np.concatenate(s, axis=1) for s in zip(support, query)))
        if iteration % args.log_every == 0 or iteration == args.iterations:
            print(f"iteration {iteration:6d}  MAML post-update loss {float(loss):.3f}  "
                  f"pretrained loss {float(pretrain_loss):.3f}  "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


def evaluate(learner, starts, args):
    """Mean and standard error of the held-out MSE of each start after each step count."""
    support, query = sample_tasks(np.random.default_rng(args.seed + 1), args.test_tasks,
                                  (args.shots, args.query_points))
    results = {}
    for label, params in starts.items():
        row = []
        for steps in STEPS_REPORTED:
            adapted = learner.adapt([support] * steps, params) if steps else params
            errors = ops.convert_to_numpy(mse(adapted, query))
            row.append((errors.mean(), errors.std(ddof=1) / np.sqrt(errors.size)))
        results[label] = row
    return results


def print_table(results):
    header = " | ".join(f"{steps} step{'s' if steps != 1 else ''}" for steps in STEPS_REPORTED)
    print(f"| start | {header} |")
    print("| --- |" + " --- |" * len(STEPS_REPORTED))
    for label, row in results.items():
        cells = " | ".join(f"{mean:.3f} ± {error:.3f}" for mean, error in row)
        print(f"| {label} | {cells} |")
    baseline = results["random init"]
    ratios = ", ".join(f"{steps}: {base[0] / maml[0]:.1f}x" for steps, base, maml
                       in zip(STEPS_REPORTED[1:], baseline[1:], results["MAML"][1:]))
    print(f"random-init MSE / MAML MSE after (steps: ratio) {ratios}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=70000,
                        help="meta-iterations (Finn et al. trained 70,000)")
    parser.add_argument("--meta-batch", type=int, default=25, help="tasks per meta-iteration")
    parser.add_argument("--shots", type=int, default=10, help="K: examples to adapt on")
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--test-tasks", type=int, default=1000)
    parser.add_argument("--query-points", type=int, default=100,
                        help="points per held-out task to score the adapted network on")
    parser.add_argument("--seed", type=int, default=0,
                        help="training tasks and weights; held-out tasks use seed + 1")
    parser.add_argument("--log-every", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 300 iterations, 100 held-out tasks")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.test_tasks, args.log_every = 300, 100, 100
    for name in ("iterations", "meta_batch", "shots", "test_tasks", "query_points", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    random_init = init_params(args.seed)
    learner = differentiable.OfflineMetaLearner(
        mse, random_init, differentiable.sgd(args.inner_lr), keras.optimizers.Adam(args.meta_lr))
    pretrained = [keras.Variable(p, name="pretrained_weight") for p in random_init]
    pretrain_step = backend.make_train_step(lambda params, batch: ops.mean(mse(params, batch)),
                                            pretrained, keras.optimizers.Adam(args.meta_lr))
    meta_train(learner, pretrain_step, args)
    results = evaluate(learner, {"MAML": learner.params, "random init": random_init,
                                 "pretrained": pretrained}, args)
    print(f"\nheld-out MSE on {args.test_tasks} tasks ({args.query_points} points each), "
          f"mean ± s.e., after SGD (lr {args.inner_lr}) on {args.shots} examples:")
    print_table(results)
    return results


if __name__ == "__main__":
    main()

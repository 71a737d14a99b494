"""What ``test_backends.py`` compares across Keras backends, computed on the one this process runs.

    KERAS_BACKEND=jax python tests/backend_probe.py OUT.npz

Writes numpy arrays: for DM, ScaleHierarchical, RNNProp and NormalizedMLP, the
initial meta-weights and TBPTT meta-gradients; ES and PES estimates for DM (each the second
truncation's of a fresh trajectory);
PIO's drift u(x, t) in its ``f`` and ``grad`` formats and the gradient of its
sum w.r.t. the drift network; and, in float64, DM's TBPTT gradient along
random directions next to central finite differences of the meta-loss.
Everything random is drawn from numpy streams, so both backends see the same
inputs.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
from keras import ops

from l2o import backend
from l2o.config import resolve
from l2o.estimators import learned_rule_estimator
from l2o.optimizers.pio.rule import PIORule
from l2o.trainer import MetaTrainer

DIGITS = ["problems/0/target=mlp_classifier", "problems/0/kwargs/layers=[8]",
          "problems/0/kwargs/dataset=digits", "problems/0/kwargs/batch_size=16"]
QUADRATIC = ["problems/0/target=quadratic", "problems/0/kwargs/dim=4"]
CONSTRUCTORS = {"DM": ["network/layers=[6, 6]"],
                "ScaleHierarchical": ["network/tensor_units=4", "network/global_units=4",
                                      "network/param_units=6"],
                # Both divide by sqrt(v): a pixel that is always 0 has v = 0 (safe_sqrt).
                "RNNProp": ["network/layers=[6, 6]"],
                "NormalizedMLP": ["network/hidden_layers=[8]", "network/step_scale=adam"]}
LENGTH = 5


def trainer(constructor, *overrides, problem=DIGITS):
    return MetaTrainer(resolve({}, problem + ["training/depth=1", f"constructor={constructor}",
                                              *CONSTRUCTORS[constructor], *overrides]))


def estimate(meta_trainer, seed=3, truncations=2):
    """The estimate of the last of ``truncations`` truncations of a fresh trajectory (PES's
    second one sums two truncations' noise)."""
    estimator = meta_trainer.estimators[0]
    state, generator = estimator.init_worker_state(seed), np.random.default_rng(seed)
    for _ in range(truncations):
        result, state = estimator.compute_gradient_estimate(state, generator, LENGTH)
    return np.float64(result.loss), [ops.convert_to_numpy(g) for g in result.grads]


def tbptt_and_particles(out):
    for constructor in CONSTRUCTORS:
        meta_trainer = trainer(constructor)
        for name, variable in meta_trainer.meta_variables.items():
            out[f"{constructor}/initial/{name}"] = variable.numpy()
        loss, grads = estimate(meta_trainer)
        out[f"{constructor}/tbptt/loss"] = loss
        out.update({f"{constructor}/tbptt/grad{i}": g for i, g in enumerate(grads)})
    for estimator in ("es", "pes"):
        meta_trainer = trainer("DM", f"estimator_constructor={estimator}", "estimator/n_particles=4",
                               "estimator/horizon=20", "estimator/sigma=0.01")
        loss, grads = estimate(meta_trainer)
        out[f"{estimator}/loss"] = loss
        out.update({f"{estimator}/grad{i}": g for i, g in enumerate(grads)})


def pio_drift(out):
    dimension, generator = 3, np.random.default_rng(0)
    x = ops.convert_to_tensor(generator.standard_normal((4, dimension)).astype(np.float32))
    t = ops.convert_to_tensor(np.float32(0.7))

    def energy(points):
        return ops.sum(ops.square(points) - ops.cos(3.0 * points), axis=-1)

    for drift_format in ("f", "grad"):
        rule = PIORule(drift_format=drift_format)
        initial = rule.init_meta_weights(0, dimension)
        # Random weights everywhere (the output layers start at zero).
        weights = {k: ops.convert_to_tensor(v + 0.3 * generator.standard_normal(v.shape)
                                            .astype(np.float32)) for k, v in initial.items()}
        names = list(weights)

        def drift_sum(*values, rule=rule, names=names):
            drift = rule.drift(dict(zip(names, values)), energy, (1.0, 1.0), 0)
            return ops.sum(drift(x, t))

        out[f"pio/{drift_format}/drift"] = ops.convert_to_numpy(
            rule.drift(weights, energy, (1.0, 1.0), 0)(x, t))
        _, grads = backend.vjp(drift_sum, [weights[k] for k in names])
        out.update({f"pio/{drift_format}/grad/{k}": ops.convert_to_numpy(g)
                    for k, g in zip(names, grads)})


def finite_differences(out):
    """DM's TBPTT gradient along random directions, and central differences (float64)."""
    # Keras 3.15 on JAX computes ops.tanh (sin, cos, ...) and ops.mean of float64 inputs in
    # float32, which would leave the central differences float32's noise: softsign, and a
    # quadratic (a sum) rather than the digits cross-entropy (a mean).
    meta_trainer = trainer("DM", "network/activation=softsign", problem=QUADRATIC)
    # The meta-weights in float64 too (the trainer keeps the float32 of their initial arrays).
    variables = {name: keras.Variable(v.numpy().astype(np.float64), dtype="float64")
                 for name, v in meta_trainer.meta_variables.items()}
    rule = meta_trainer.estimators[0].rule
    estimator = learned_rule_estimator(rule, meta_trainer.problems[0], variables,
                                       meta_trainer.config, False)
    trajectory = estimator.new_trajectory(3)
    params = [ops.cast(p, "float64") for p in trajectory.params]
    state = estimator.rule.init_state(params, 3)
    batches = tuple(b.astype(np.float64) if b.dtype.kind == "f" else b
                    for b in estimator.problem.batches(3, 0, LENGTH))
    initial = ops.cast(trajectory.initial_loss, "float64")
    _, grads, *_ = estimator.estimate(params, state, batches, initial)
    start = {name: v.numpy() for name, v in variables.items()}

    def meta_loss(name, value):
        variables[name].assign(value)
        loss = float(estimator.evaluate(params, state, batches, initial)[0])
        variables[name].assign(start[name])
        return loss

    generator, h = np.random.default_rng(5), 1e-6
    exact, finite = [], []
    for (name, value), grad in zip(start.items(), grads):
        direction = generator.standard_normal(value.shape)
        exact.append(float(np.sum(ops.convert_to_numpy(grad) * direction)))
        finite.append((meta_loss(name, value + h * direction)
                       - meta_loss(name, value - h * direction)) / (2 * h))
    out["fd/exact"], out["fd/finite"] = np.array(exact), np.array(finite)


def probe():
    """Every array this module computes, by name."""
    out = {"backend": np.array(keras.backend.backend())}
    tbptt_and_particles(out)
    pio_drift(out)
    # float64 for the finite differences only (JAX computes float64 requests in float32
    # unless x64 is on; the rest runs as train.py does, with it off).
    x64 = keras.backend.backend() == "jax"
    if x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    keras.backend.set_floatx("float64")
    try:
        finite_differences(out)
    finally:
        keras.backend.set_floatx("float32")
        if x64:
            jax.config.update("jax_enable_x64", False)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **probe())

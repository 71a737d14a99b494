"""What Keras has no portable spelling for, on the backend Keras runs on.

The optimiser and problem maths elsewhere in the package is written once with
``keras.ops``. This package holds the rest, side by side for TensorFlow
(``tensorflow_backend``) and JAX (``jax_backend``), behind one interface
chosen by Keras's own switch (``KERAS_BACKEND``, ``keras.backend.backend()``);
only the chosen module is imported, so the JAX backend runs where TensorFlow
is not installed:

    value_and_grad(fn, wrt)          ((value, aux), grads) of fn w.r.t. Keras
                                     variables, or its first argument (wrt None)
    jacobians, jvp, vjp              forward and reverse derivatives of a function
    stop_gradient(tree)
    dense(gradient, shape)           a gradient as a dense tensor (TensorFlow's sparse
                                     IndexedSlices, from an embedding, scattered)
    Tape                             a gradient tape opened and closed at will
                                     (TensorFlow only: JAX has no tapes)
    compile_fn(fn, jit_compile, relax_leading_dim, variables)
                                     a compiled function; ``variables`` lists the
                                     Keras variables fn reads or assigns (JAX
                                     passes them in and out, TensorFlow tracks them)
    scan(step, carry, xs)            a loop stacking only the per-step outputs
    stateless_seed, seed_from_numpy, fold_in, split_seed, stateless_normal
                                     stateless random keys and draws ([2] integer
                                     seeds; each backend draws its own numbers)
    probability()                    TensorFlow Probability on this backend
    eagerly()                        a context that runs eagerly inside a trace
    accelerator_available()
    make_train_step(loss_fn, variables, optimizer, jit_compile)
                                     the compiled Keras training step of evaluation
    ScalarLog(logdir)                TensorBoard scalars (no TensorFlow needed)
"""

import keras

from l2o.backend.summaries import ScalarLog  # noqa: F401  (part of the interface)

INTERFACE = ("value_and_grad", "jacobians", "jvp", "vjp", "stop_gradient", "dense", "Tape",
             "compile_fn", "scan", "stateless_seed", "seed_from_numpy", "fold_in", "split_seed",
             "stateless_normal", "probability", "eagerly", "accelerator_available")

NAME = keras.backend.backend()
if NAME == "tensorflow":
    from l2o.backend import tensorflow_backend as _implementation
elif NAME == "jax":
    from l2o.backend import jax_backend as _implementation
else:
    raise ImportError(f"l2o runs on Keras's tensorflow and jax backends, not on {NAME!r}: "
                      "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")

globals().update({name: getattr(_implementation, name) for name in INTERFACE})


def make_train_step(loss_fn, variables, optimizer, jit_compile=False):
    """A compiled step ``batch -> loss`` that applies ``optimizer`` to ``variables``.

    An optimiser that declares ``apply_loss`` (one that samples rather than
    descends) is handed the batch's loss as a function of the weights instead
    of its gradient. The optimiser is built first, so that its variables exist
    before the compiled step declares them.
    """
    variables = list(variables)
    if not optimizer.built:
        optimizer.build(variables)

    def train_step(batch):
        if hasattr(optimizer, "apply_loss"):
            loss = loss_fn(variables, batch)
            optimizer.apply_loss(lambda weights: loss_fn(weights, batch), variables)
            return loss
        (loss, _), grads = _implementation.value_and_grad(
            lambda: (loss_fn(variables, batch), None), variables)()
        optimizer.apply(grads, variables)
        return loss

    return _implementation.compile_fn(train_step, jit_compile,
                                      variables=lambda: variables + list(optimizer.variables))

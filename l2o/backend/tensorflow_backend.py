"""The TensorFlow side of ``l2o.backend`` (see its docstring for the interface)."""

import numpy as np
import tensorflow as tf


def value_and_grad(fn, wrt):
    """Returns ``g(*args) -> ((value, aux), grads)``, differentiating w.r.t. ``wrt``.

    ``fn`` returns ``(value, aux)``; ``wrt`` is a list of variables, or None to
    differentiate w.r.t. the first positional argument (a list of tensors).
    """

    def wrapped(*args):
        # Keras variables as their tf.Variable, so that non-trainable ones (an
        # optimiser's own) can be watched too.
        targets = tf.nest.map_structure(_unwrap, args[0] if wrt is None else list(wrt))
        with tf.GradientTape() as tape:
            tape.watch([t for t in tf.nest.flatten(targets)
                        if tf.is_tensor(t) or isinstance(t, tf.Variable)])
            value, aux = fn(*args)
        return (value, aux), tape.gradient(
            value, targets, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return wrapped


def _unwrap(target):
    """A Keras variable as its tf.Variable; anything else as it is."""
    return target.value if hasattr(target, "path") else target


class Tape:
    """A gradient tape that records from its creation until ``stop()``.

    ``with tf.GradientTape()`` ties a tape to a block; the differentiable
    wrapper of Keras models (``l2o.differentiable.model``) needs tapes that
    open after one optimisation step and close at the next, for several
    models at once, in any order. A tape created while another records is
    recorded by it, so a gradient taken from the inner tape can itself be
    differentiated on the outer one (second order). ``watch`` lists tensors to
    differentiate with respect to; trainable variables read while the tape
    records are watched too unless ``watch_variables`` is false.
    """

    def __init__(self, watch=(), persistent=False, watch_variables=True):
        self._tape = tf.GradientTape(persistent=persistent,
                                     watch_accessed_variables=watch_variables)
        self._tape.__enter__()
        self._tape.watch(list(watch))
        self.recording = True

    def stop(self):
        if self.recording:
            self._tape.__exit__(None, None, None)
            self.recording = False

    def gradient(self, target, sources):
        """d target / d each of ``sources`` (tensors or Keras variables); None where unconnected.

        Computed on every other tape still recording, never on this one.
        """
        sources = [_unwrap(s) for s in sources]
        if not self.recording:
            return self._tape.gradient(target, sources)
        with self._tape.stop_recording():
            return self._tape.gradient(target, sources)


def jacobians(fn, primals):
    """``(fn(*primals), [d fn / d p for p in primals])``, each Jacobian shaped [*out, *p]."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(primals)
        value = fn(*primals)
    return value, [tape.jacobian(value, p, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                   for p in primals]


def jvp(fn, primals, tangents):
    """``(fn(*primals), sum_i d fn / d primals[i] . tangents[i])``, in forward mode."""
    with tf.autodiff.ForwardAccumulator(primals, tangents) as accumulator:
        value = fn(*primals)
    return value, accumulator.jvp(value, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def vjp(fn, primals, cotangent=None):
    """``(fn(*primals), [cotangent . d fn / d p for p in primals])``, in reverse mode
    (a cotangent of ones when None: the gradients of the sum)."""
    with tf.GradientTape() as tape:
        tape.watch(primals)
        value = fn(*primals)
    return value, tape.gradient(value, primals, output_gradients=cotangent,
                                unconnected_gradients=tf.UnconnectedGradients.ZERO)


def stop_gradient(tensors):
    return tf.nest.map_structure(tf.stop_gradient, tensors)


def dense(gradient, shape):
    """``gradient`` as a dense tensor of ``shape``: a sparse one (``tf.IndexedSlices``, what
    a gather such as ``keras.layers.Embedding`` backpropagates) scattered into zeros, its
    repeated rows summed, as the dense gradient would have them; any other as it is."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    summed = tf.math.unsorted_segment_sum(gradient.values, gradient.indices, int(shape[0]))
    return tf.ensure_shape(summed, shape)


def compile_fn(fn, jit_compile=False, relax_leading_dim=False, variables=()):
    """Compiles ``fn`` into a graph function, optionally with XLA.

    ``relax_leading_dim`` lets one trace serve every unroll length: XLA needs
    static loop bounds, so with ``jit_compile`` a trace per length is kept.
    ``variables`` (read or assigned by ``fn``) need no declaring here: a
    ``tf.function`` tracks the variables it touches.
    """
    return tf.function(fn, jit_compile=bool(jit_compile),
                       reduce_retracing=relax_leading_dim and not jit_compile)


def scan(step, carry, xs):
    """``carry, ys = scan(step, carry, xs)`` over the leading axis of ``xs``.

    ``step(carry, x) -> (carry, y)``; ``ys`` stacks the ``y``. Unlike
    ``tf.scan`` only the per-step outputs are stacked, not the whole carry
    (which holds every inner parameter). A static length becomes the loop's
    ``maximum_iterations`` so that XLA can differentiate through it. The first
    step runs before the loop; it fixes the outputs' structure and dtypes.
    """
    static_length = tf.nest.flatten(xs)[0].shape[0]
    length = static_length or tf.shape(tf.nest.flatten(xs)[0])[0]
    carry, first_y = step(carry, tf.nest.map_structure(lambda t: t[0], xs))
    arrays = tf.nest.map_structure(
        lambda v: tf.TensorArray(v.dtype, size=length, element_shape=v.shape).write(0, v),
        first_y)

    def body(i, carry, arrays):
        carry, y = step(carry, tf.nest.map_structure(lambda t: t[i], xs))
        arrays = tf.nest.map_structure(lambda a, v: a.write(i, v), arrays, y)
        return i + 1, carry, arrays

    _, carry, arrays = tf.while_loop(
        lambda i, *_: i < length, body, (tf.constant(1), carry, arrays),
        maximum_iterations=None if static_length is None else static_length - 1)
    return carry, tf.nest.map_structure(lambda a: a.stack(), arrays)


def stateless_seed(seed):
    """A [2] int32 stateless seed from an int (deterministically) or a [2] tensor.

    ``tfp.random.sanitize_seed`` would turn an int into a *stateful* draw, so
    two draws with the same int seed would differ.
    """
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int32)
    return tf.cast(seed, tf.int32)


def seed_from_numpy(generator):
    """A [2] stateless seed drawn from a numpy Generator."""
    return tf.constant(generator.integers(0, 2 ** 31, size=2), tf.int32)


def fold_in(seed, data):
    """A new stateless seed from ``seed`` and the integer (tensor) ``data``."""
    return tf.random.experimental.stateless_fold_in(stateless_seed(seed), tf.cast(data, tf.int32))


def split_seed(seed, count):
    """``count`` independent stateless seeds, stacked [count, 2]."""
    return tf.stack(probability().random.split_seed(stateless_seed(seed), n=count))


def stateless_normal(shape, seed, dtype="float32"):
    return tf.random.stateless_normal(shape, stateless_seed(seed), dtype=dtype)


def probability():
    """TensorFlow Probability on this backend (distributions and stateless seeds)."""
    import tensorflow_probability as tfp

    return tfp


def eagerly():
    """A context that runs eagerly even while a function is being traced (for numpy work)."""
    return tf.init_scope()


def accelerator_available():
    return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))

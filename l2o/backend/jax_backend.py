"""The JAX side of ``l2o.backend`` (see its docstring for the interface).

Keras variables are state, and JAX functions are pure: a function that reads
or assigns variables is given their values through a ``keras.StatelessScope``
(the way Keras's own JAX trainer calls a model), and what it assigns is read
back from the scope. ``compile_fn`` passes a declared list of variables into
the ``jax.jit``-compiled function and assigns their new values after the
call; ``value_and_grad`` differentiates with respect to variables by binding
them to the values ``jax.value_and_grad`` traces. Bindings nest: an inner
one sees every variable the outer ones bound.
"""

import contextlib

import jax
import jax.numpy as jnp
import keras
import numpy as np

_bindings = []  # the StatelessScopes this module has entered, innermost last


@contextlib.contextmanager
def bound(variables, values):
    """Runs its block with each Keras variable of ``variables`` reading its value in
    ``values`` (and every variable an enclosing binding bound reading that value);
    yields the scope, whose ``get_current_value`` has what the block assigned."""
    scope = keras.StatelessScope(list(zip(variables, values)))
    if _bindings:
        for key, value in _bindings[-1].state_mapping.items():
            scope.state_mapping.setdefault(key, value)
    _bindings.append(scope)
    try:
        with scope:
            yield scope
    finally:
        _bindings.pop()


def _array(value):
    """A Keras variable as its value (bound or not); anything else as it is."""
    return value.value if isinstance(value, keras.Variable) else value


def value_and_grad(fn, wrt):
    """Returns ``g(*args) -> ((value, aux), grads)``, differentiating w.r.t. ``wrt``.

    ``fn`` returns ``(value, aux)``; ``wrt`` is a list of Keras variables, or None
    to differentiate w.r.t. the first positional argument (a list of tensors).
    """

    def wrapped(*args):
        if wrt is None:
            return jax.value_and_grad(fn, has_aux=True)(
                jax.tree.map(_array, args[0], is_leaf=_is_variable), *args[1:])
        variables = list(wrt)

        def of_values(values, *args):
            with bound(variables, values):
                return fn(*args)

        return jax.value_and_grad(of_values, has_aux=True)([v.value for v in variables], *args)

    return wrapped


def _is_variable(value):
    return isinstance(value, keras.Variable)


class Tape:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "gradient tapes exist only on the TensorFlow backend: the differentiable wrapper "
            "of Keras models (l2o.differentiable.model) needs KERAS_BACKEND=tensorflow; on "
            "JAX, use the functional optimisers of l2o.differentiable")


def jacobians(fn, primals):
    """``(fn(*primals), [d fn / d p for p in primals])``, each Jacobian shaped [*out, *p]."""
    primals = list(primals)
    return fn(*primals), list(jax.jacrev(fn, argnums=tuple(range(len(primals))))(*primals))


def jvp(fn, primals, tangents):
    """``(fn(*primals), sum_i d fn / d primals[i] . tangents[i])``, in forward mode."""
    return jax.jvp(fn, tuple(primals), tuple(tangents))


def vjp(fn, primals, cotangent=None):
    """``(fn(*primals), [cotangent . d fn / d p for p in primals])``, in reverse mode
    (a cotangent of ones when None: the gradients of the sum)."""
    value, pullback = jax.vjp(fn, *primals)
    if cotangent is None:
        cotangent = jax.tree.map(jnp.ones_like, value)
    return value, list(pullback(cotangent))


def stop_gradient(tensors):
    return jax.tree.map(jax.lax.stop_gradient, tensors)


def dense(gradient, shape):
    """``gradient`` as it is: JAX's gradients are always dense."""
    return gradient


def _static(value):
    return value is None or isinstance(value, (bool, int, float, str))


def compile_fn(fn, jit_compile=False, relax_leading_dim=False, variables=()):
    """``fn`` compiled with ``jax.jit`` (on JAX everything is XLA: ``jit_compile`` and
    ``relax_leading_dim`` change nothing, and JAX traces once per input shape).

    ``variables``: the Keras variables ``fn`` reads or assigns (a list, or a
    callable returning one, read at each call). Their values go in as inputs
    and their new values come out and are assigned, so the compiled function
    never holds a stale copy. Python scalars and None among the positional
    arguments are static, as a ``tf.function`` treats them: one trace per value.
    Only the variables ``fn`` assigned are assigned after the call.
    """

    def pure(values, static, *dynamic):
        arguments, tracked = _merge(static, dynamic), declared()
        with bound(tracked, values) as scope:
            before = [scope.get_current_value(v) for v in tracked]
            outputs = fn(*arguments)
        # None for a variable fn did not assign: nothing to copy back after the call.
        return outputs, [None if after is unchanged else after for after, unchanged in
                         zip((scope.get_current_value(v) for v in tracked), before)]

    def declared():
        return list(variables() if callable(variables) else variables)

    compiled = jax.jit(pure, static_argnums=1)

    def call(*args):
        tracked = declared()
        static = tuple((index, arg) for index, arg in enumerate(args) if _static(arg))
        dynamic = [arg for arg in args if not _static(arg)]
        outputs, assigned = compiled([v.value for v in tracked], static, *dynamic)
        for variable, value in zip(tracked, assigned):
            if value is not None:
                variable.assign(value)
        return outputs

    return call


def _merge(static, dynamic):
    """The positional arguments from the static ones (with their positions) and the rest."""
    dynamic, arguments = list(dynamic), []
    positions = dict(static)
    for index in range(len(static) + len(dynamic)):
        arguments.append(positions[index] if index in positions else dynamic.pop(0))
    return arguments


def scan(step, carry, xs):
    """``carry, ys = scan(step, carry, xs)`` over the leading axis of ``xs``
    (``jax.lax.scan``: only the per-step outputs are stacked)."""
    return jax.lax.scan(step, carry, xs)


def stateless_seed(seed):
    """A [2] uint32 key from an int (deterministically) or a [2] integer array."""
    if isinstance(seed, (int, np.integer)):
        return jnp.array([0, int(seed)], jnp.uint32)
    return jnp.asarray(seed).astype(jnp.uint32)


def seed_from_numpy(generator):
    """A [2] stateless seed drawn from a numpy Generator."""
    return jnp.asarray(generator.integers(0, 2 ** 31, size=2), jnp.uint32)


def fold_in(seed, data):
    """A new stateless seed from ``seed`` and the integer (array) ``data``."""
    return jax.random.key_data(jax.random.fold_in(
        jax.random.wrap_key_data(stateless_seed(seed)), jnp.asarray(data, jnp.uint32)))


def split_seed(seed, count):
    """``count`` independent stateless seeds, stacked [count, 2]."""
    return jax.random.key_data(jax.random.split(
        jax.random.wrap_key_data(stateless_seed(seed)), count))


def stateless_normal(shape, seed, dtype="float32"):
    return jax.random.normal(jax.random.wrap_key_data(stateless_seed(seed)), tuple(shape),
                             dtype)


def probability():
    """TensorFlow Probability's JAX substrate (distributions and stateless seeds)."""
    from tensorflow_probability.substrates import jax as tfp

    return tfp


def eagerly():
    """Nothing to leave: outside a ``jax.jit`` trace everything is eager, and inside it
    concrete numpy work runs as Python does."""
    return contextlib.nullcontext()


def accelerator_available():
    return any(device.platform != "cpu" for device in jax.devices())

"""Checks of user-given values, shared by configs and the Python constructors.

A leaf module: it imports nothing from l2o, so every package (optimizers,
problems, strategies, the config loader) can use it without import cycles.
Each rule lives here once; a failed check raises ``ConfigError`` (a
``ValueError``) whose message starts with the name of the offending key.
"""

import copy
import difflib
import inspect
import json
import math
import numbers

import numpy as np


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key."""


class _Required:
    """The default ``signature_defaults`` gives a parameter that has none: a config must
    give a value (``check_tree`` says which key lacks one). Copies are itself."""

    def __repr__(self):
        return "REQUIRED"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


REQUIRED = _Required()


# How much of a user's value an error message quotes: a value can be as large as a file.
SHOWN_LENGTH = 80


def shown(value, length=SHOWN_LENGTH):
    """``repr(value)`` as an error message quotes it: at most ``length`` characters, a longer
    one cut with ``...``, so that a huge value cannot make a huge line (nor take long: a
    list, tuple or mapping is written only as far as the cut)."""
    text, complete = _repr_within(value, length)
    if "\n" in text:  # one line, whatever the value's repr (an array's has several)
        text = " ".join(text.split())
    return text if complete and len(text) <= length else text[:length - 3] + "..."


def _repr_within(value, budget):
    """``(repr(value), True)``, or ``(a prefix of it longer than budget, False)``."""
    brackets = {list: "[]", tuple: "()", dict: "{}"}.get(type(value))
    if brackets is None or not value:
        return repr(value), True
    text = brackets[0]
    for index, item in enumerate(value.items() if isinstance(value, dict) else value):
        text += ", " if index else ""
        for position, element in enumerate(item if isinstance(value, dict) else (item,)):
            part, complete = _repr_within(element, budget - len(text))
            text += (": " if position else "") + part
            if not complete or len(text) > budget:
                return text, False
    return text + ("," if type(value) is tuple and len(value) == 1 else "") + brackets[1], True


def shortened(text, length=SHOWN_LENGTH):
    """``text`` on one line in at most ``length`` characters: a longer one cut at the last
    word boundary that fits (before a bracket the cut would leave open), with ``...``."""
    text = " ".join(str(text).split())
    if len(text) <= length:
        return text
    cut = text[:length - 3]
    space = cut.rfind(" ")
    cut = cut[:space] if space > 0 else cut
    opened = []
    for position, char in enumerate(cut):
        if char in "([{":
            opened.append(position)
        elif char in ")]}" and opened:
            opened.pop()
    if opened and opened[0] > length // 2:
        cut = cut[:opened[0]]
    return cut.rstrip(" ,;:.") + "..."


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_type(name, value, default):
    """``value`` converted to the type of ``default``, or a ConfigError naming ``name``."""
    if default is None or default is REQUIRED:
        return value
    kind = type(default)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind in (list, tuple):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {type(value).__name__} "
                          f"{shown(value)}")
    return value


def check_units(name, value):
    """A non-empty list of positive ints (layer sizes, filter counts)."""
    if not value or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0
                            for u in value):
        raise ConfigError(f"{name}: must be a non-empty list of positive ints, got "
                          f"{shown(value)}")


def check_range(name, value, low=None, high=None, finite=True):
    """``low < value <= high`` (either bound optional), and finite unless ``finite`` is false
    (an infinite value is no size, scale or rate: it fails later, in the maths). A value
    that is no number (a bool included) is refused as such, before any comparison."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name}: expected a number, got {type(value).__name__} "
                          f"{shown(value)}")
    if (low is not None and not value > low) or (high is not None and not value <= high):
        bounds = " and ".join(part for part in (low is not None and f"above {low}",
                                                high is not None and f"at most {high}") if part)
        raise ConfigError(f"{name}: must be {bounds}, got {shown(value)}")
    if finite and not math.isfinite(value):
        raise ConfigError(f"{name}: must be finite, got {shown(value)}")


def check_fraction(name, value):
    """``0 < value < 1`` (decay rates, probabilities of a choice)."""
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name}: must be strictly between 0 and 1, got {shown(value)}")


def check_keras_name(name, value, kind):
    """A name that ``keras.<kind>.get`` (activations, initializers) accepts."""
    import keras

    try:
        getattr(keras, kind).get(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: unknown {kind[:-1]} {shown(value)}") from None


def check_learning_rate(name, value):
    """A positive, finite learning rate, as a float (YAML reads ``1`` as an int, which Keras
    refuses); a negative one would ascend the loss without a word, and 0 would not move.
    The one rule for a rate given as a number, in a config or to a constructor."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0 < value < math.inf:
        raise ConfigError(f"{name}: must be a positive number, got {shown(value)}")
    return float(value)


def check_optimizer_learning_rate(value, name="learning_rate"):
    """An optimiser constructor's ``learning_rate``: a number as ``check_learning_rate`` has
    it (an int becomes a float, as in a config); a schedule or other callable is Keras's."""
    return value if callable(value) else check_learning_rate(name, value)


def check_keras_optimizer(name, spec):
    """A ``{class_name, config}`` that Keras builds; a numeric ``config/learning_rate`` is
    checked and made a float in place (a schedule, a mapping, is left to Keras)."""
    import keras

    if not isinstance(spec, dict) or set(spec) - {"class_name", "config"}:
        raise ConfigError(f"{name}: a Keras optimiser is {{class_name: ..., config: {{...}}}}, "
                          f"got {shown(spec)}")
    config = spec.get("config")
    if isinstance(config, dict) and not isinstance(config.get("learning_rate", {}), dict):
        config["learning_rate"] = check_learning_rate(f"{name}/config/learning_rate",
                                                      config["learning_rate"])
    try:
        keras.optimizers.get(copy.deepcopy(spec))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{name}: not a usable Keras optimiser ({first_line(error)})") from None


def check_choice(name, value, options):
    """``value`` is one of ``options`` (same type too: ``1`` is not ``True``); the one
    message for a bad choice, with the closest option when there is one."""
    if any(type(value) is type(option) and value == option for option in options):
        return
    names = [option if isinstance(option, str) else json.dumps(option) for option in options]
    close = difflib.get_close_matches(str(value), names, n=1) if isinstance(value, str) else []
    hint = f"did you mean '{close[0]}'?" if close else f"choose from {', '.join(names)}"
    raise ConfigError(f"{name}: unknown value {shown(value)}; {hint}")


def unknown_key(name, key, known):
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else \
        f"; valid keys: {', '.join(sorted(str(k) for k in known))}"
    return f"{name}: unknown key{hint}"


def signature_defaults(cls):
    """Keyword defaults of ``cls.__init__``: the single source of those defaults.

    A constructor that takes ``**kwargs`` passes them on to its base class, so
    the base classes' keyword defaults count too. ``cls`` may also be a
    function that builds the object (the l2o toolkit's problem ``target``): its
    own keyword defaults. A parameter without a default gets ``REQUIRED`` (any value, but
    one must be given).
    """
    defaults = {}
    functions = [klass.__init__ for klass in cls.__mro__
                 if "__init__" in vars(klass) and klass is not object] \
        if isinstance(cls, type) else [cls]
    for function in functions:
        parameters = inspect.signature(function).parameters
        for name, parameter in parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL,
                                                    parameter.VAR_KEYWORD):
                continue
            default = REQUIRED if parameter.default is parameter.empty else parameter.default
            defaults.setdefault(name, list(default) if isinstance(default, tuple) else default)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            break
    return defaults


def check_tree(prefix, values, reference, untyped=()):
    """Every key of ``values`` known to ``reference``, given, and of its default's type.

    Values are converted in place (an int where a float is expected); keys
    named in ``untyped`` (full names) take several types and are left to
    their own checks.
    """
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in reference:
            raise ConfigError(unknown_key(name, key, reference))
        if value is REQUIRED:
            raise ConfigError(f"{name}: required")
        expected = reference[key]
        if isinstance(expected, dict) and expected and key not in ("config", "kwargs"):
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: must be a mapping")
            check_tree(f"{name}/", value, expected, untyped)
        elif name not in untyped:
            values[key] = check_type(name, value, expected)


def fill_spec(name, spec, registry):
    """Completes the ``{target, args, kwargs}`` entry ``name`` of ``registry`` in place.

    Positional arguments become keyword arguments (so each is checked by
    name) and missing keyword arguments take the class's keyword defaults.
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"{name}: a {registry.kind} is a mapping with target, args and kwargs")
    for key in spec:
        if key not in ("target", "args", "kwargs"):
            raise ConfigError(unknown_key(f"{name}/{key}", key, ("target", "args", "kwargs")))
    spec["target"] = registry.canonical(f"{name}/target", spec.get("target"))
    if not isinstance(spec.setdefault("kwargs", {}), dict):
        raise ConfigError(f"{name}/kwargs: must be a mapping")
    if not isinstance(spec.setdefault("args", []), list):
        raise ConfigError(f"{name}/args: must be a list")
    defaults = signature_defaults(registry[spec["target"]])
    if len(spec["args"]) > len(defaults):
        raise ConfigError(f"{name}/args: {spec['target']} takes at most {len(defaults)} "
                          f"arguments ({', '.join(defaults)})")
    for key, value in zip(defaults, spec["args"]):
        if key in spec["kwargs"]:
            raise ConfigError(f"{name}/kwargs/{key}: given in args too")
        spec["kwargs"][key] = value
    spec["args"] = []
    spec["kwargs"] = {**defaults, **copy.deepcopy(spec["kwargs"])}


def check_spec(name, spec, registry):
    """The keys, types and values of a filled entry's ``kwargs`` (see ``fill_spec``)."""
    cls = registry[spec["target"]]
    check_tree(f"{name}/kwargs/", spec["kwargs"], signature_defaults(cls))
    if hasattr(cls, "validate_config"):  # a function that builds the object has no checks
        cls.validate_config(f"{name}/kwargs/", spec["kwargs"])


def check_network(rule_class, network):
    """``network``, a learned update rule's settings, completed with ``rule_class``'s keyword
    defaults and checked: keys and types against those defaults, then the rule's
    ``validate_config``. The one check of ``network``, for configs and constructors alike."""
    if network is None:
        network = {}
    if not isinstance(network, dict):
        raise ConfigError(f"network: must be a mapping of {rule_class.__name__} settings, "
                          f"got {shown(network)}")
    defaults = signature_defaults(rule_class)
    complete = {**defaults, **copy.deepcopy(network)}
    check_tree("network/", complete, defaults)
    rule_class.validate_config(complete)
    return complete


def check_meta_weights(given, expected, shapes=True):
    """``given`` as float32 arrays, with the names of ``expected`` (``{name: array}``, from the
    rule's ``init_meta_weights``) and, if ``shapes``, their shapes."""
    if not isinstance(given, dict):
        raise ConfigError(f"meta_weights: must be a mapping of name -> array, got "
                          f"{type(given).__name__}")
    names = ", ".join(sorted(expected)) or "none"
    # Read from a checkpoint (``checkpoints.Entries``): the file is what to name.
    path = getattr(given, "path", None)
    for key in given:
        if key not in expected:
            raise ConfigError(f"{path}: entry 'meta/{key}' is no meta-weight of this run's "
                              f"optimiser (expected {names}); restore the file or choose "
                              f"another checkpoint" if path else
                              f"meta_weights/{key}: unknown meta-weight; expected {names}")
    for key in sorted(expected):
        if key not in given:
            raise ConfigError(f"{path}: incomplete checkpoint: no entry 'meta/{key}'; "
                              f"restore the file or choose another checkpoint" if path else
                              f"meta_weights/{key}: missing; expected {names}")
    arrays = {}
    for key, value in given.items():
        name = f"{path}: entry 'meta/{key}'" if path else f"meta_weights/{key}"
        try:
            arrays[key] = np.asarray(value, np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: not an array of numbers") from None
        if shapes and arrays[key].shape != np.shape(expected[key]):
            raise ConfigError(f"{name}: shape {arrays[key].shape} does not match "
                              f"{np.shape(expected[key])}")
    return arrays

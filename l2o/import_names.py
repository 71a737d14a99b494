"""Python objects in a config, written as names that another process can import.

The l2o toolkit's Python API took callables and classes wherever a config file
takes a name (``unroll_distribution``, ``annealing_schedule``, a curriculum
``schedule``, ``unroll_weights``, a problem's ``target``, the optimiser and
strategy classes). A resolved config must stay JSON (``config.json`` and every
checkpoint's record of it), so ``dump`` writes each callable as
``"module:qualname"`` and ``load`` imports it back, in this process or in
``resume.py``'s.

An object that no import finds again (a lambda, a function defined inside
another, one defined in the script being run, a callable instance) still
works in the process that made the config: it is written as a name that says
so and why, and kept here under that name. ``load`` of such a name in another
process raises a ConfigError that gives the reason.
"""

import importlib
import re

from l2o.validation import ConfigError, first_line

IMPORTABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
# The mark of an object kept for this process only, followed by why and its id.
THIS_PROCESS_ONLY = " (this process only: "

# Objects without an importable name, by the name ``dump`` wrote for them; holding
# them keeps their ids, which are part of that name, from being reused.
_kept = {}


def dump(value):
    """``value`` (a config, or part of one) with every callable replaced by its name."""
    if isinstance(value, dict):
        return {key: dump(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump(item) for item in value]
    return name_of(value) if callable(value) else value


def name_of(obj):
    """``"module:qualname"``, or, for an object no import finds, a name kept for this process."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    reason = _not_importable(obj, module, qualname)
    if reason is None:
        return f"{module}:{qualname}"
    name = (f"{module}:{qualname or type(obj).__qualname__}{THIS_PROCESS_ONLY}{reason}; "
            f"id {id(obj):x})")
    _kept[name] = obj
    return name


def is_reference(value):
    """Whether ``value`` is a name that ``dump`` writes (importable or not)."""
    return isinstance(value, str) and (IMPORTABLE.fullmatch(value) is not None
                                       or THIS_PROCESS_ONLY in value)


def load(key, name):
    """The object ``name`` (from ``dump``) stands for; ConfigError naming ``key`` if none."""
    if name in _kept:
        return _kept[name]
    if THIS_PROCESS_ONLY in name:
        short, reason = name.split(THIS_PROCESS_ONLY, 1)
        reason = reason.rsplit("; id ", 1)[0]
        raise ConfigError(f"{key}: {short} was a Python object of the process that made this "
                          f"config ({reason}); define it at the top level of a module and start "
                          f"a new run")
    module, qualname = name.split(":")
    try:
        return _import(module, qualname)
    except Exception as error:  # noqa: BLE001  (whatever the module raises on import)
        raise ConfigError(f"{key}: cannot import {name} ({first_line(error)})") from None


def _import(module, qualname):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _not_importable(obj, module, qualname):
    """Why ``module:qualname`` would not bring ``obj`` back in another process, or None."""
    if not isinstance(module, str) or not isinstance(qualname, str):
        return f"a {type(obj).__name__} object has no importable name"
    if "<lambda>" in qualname:
        return "a lambda has no importable name"
    if "<locals>" in qualname:
        return "defined inside a function, it has no importable name"
    if module == "__main__":
        return "defined in the script that was run, which another process does not import"
    try:
        found = _import(module, qualname)
    except Exception:  # noqa: BLE001  (likewise)
        return f"{module}:{qualname} does not import"
    return None if found is obj else f"{module}:{qualname} names another object"


def loaded(key, value):
    """``value``, or the object it names if it is a name that ``dump`` wrote."""
    return load(key, value) if is_reference(value) else value


def callable_or_checked(key, value, check):
    """The check of a config value that may name a callable: the callable, if ``value`` is a
    name that ``dump`` wrote (a ConfigError naming ``key`` if it names none); any other
    value after ``check(value)``, which raises for a bad one."""
    if not is_reference(value):
        check(value)
        return value
    obj = load(key, value)
    if not callable(obj):
        raise ConfigError(f"{key}: {value} is a {type(obj).__name__}, not a callable")
    return obj

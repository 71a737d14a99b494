"""Name -> class tables that configs choose from, filled by the classes' own modules.

A learned optimiser, problem or strategy registers itself where it is defined
(``@OPTIMIZERS.register("DM")``), so the config loader, the command line and
the run reader find it without naming it, and adding one touches one module.
A config may also name a class (or a function that builds one) by its import
name, ``"module:qualname"`` (``l2o.import_names``): what the Python API records
for a class or callable that is not registered. The name must give what the
registry holds: a subclass of its base class or, where the registry takes
them, a function from outside the standard library (so that ``os:system`` is
no problem target). Importing the name still runs its module's code: a config
file is as trusted as a script.
"""

import sys

from l2o import import_names
from l2o.validation import ConfigError, check_choice


class Registry(dict):
    """A dict of name -> class whose lookups fail with the config key's name.

    ``aliases`` maps other names (the l2o toolkit's) to registered ones; an
    import name is looked up by importing it. ``base`` is the import name of the
    class every entry derives from (imported when first needed: its module
    imports this one); ``functions``: whether an entry may also be a function
    that builds an instance of it.
    """

    def __init__(self, kind, base, functions=False):
        super().__init__()
        self.kind, self.base, self.functions = kind, base, functions
        self.aliases = {}

    def register(self, name, aliases=()):
        def decorate(cls):
            for key in (name, *aliases):
                if key in self or key in self.aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self[name] = cls
            self.aliases.update(dict.fromkeys(aliases, name))
            return cls

        return decorate

    def __missing__(self, name):
        if import_names.is_reference(name):
            return self.load(self.kind, name)
        raise KeyError(name)

    def load(self, key, name):
        """What the import name ``name`` gives, if this registry can hold it; a ConfigError
        naming ``key`` otherwise."""
        found = import_names.load(key, name)
        base = import_names.load(self.kind, self.base)
        if isinstance(found, type):
            if issubclass(found, base) and found is not base:
                return found
            what = "the base class itself" if found is base else "another class"
        elif not callable(found):
            what = f"a {type(found).__name__}"
        elif not self.functions:
            what = "a function"
        elif _in_standard_library(name, found):
            what = "a function of the standard library"
        else:
            return found
        takes = ", or a function outside the standard library that builds one" \
            if self.functions else ""
        raise ConfigError(f"{key}: {name} is {what}, not a {self.kind} (a subclass of "
                          f"{self.base}{takes})")

    def canonical(self, key, value):
        """The name a resolved config records for ``value``; a ConfigError naming ``key``
        if it has none.

        A registered name stays; an alias becomes the name it stands for; the
        import name of a registered class becomes its registered name, and that
        of any other class or function stays (it must import).
        """
        if import_names.is_reference(value):
            found = self.load(key, value)
            return next((name for name, cls in self.items() if cls is found), value)
        if isinstance(value, str):
            value = self.aliases.get(value, value)
        if not isinstance(value, str) or value not in self:  # named alphabetically, whatever the import order
            check_choice(key, value, sorted(self))
        return value

    def lookup(self, key, name):
        """The class registered as ``name`` (or imported); a ConfigError naming ``key`` otherwise."""
        return self[self.canonical(key, name)]


def _in_standard_library(name, function):
    # The function's own module too: another package may import os.system as its own.
    modules = (name.split(":")[0], getattr(function, "__module__", None) or "")
    return any(module.split(".")[0] in sys.stdlib_module_names for module in modules)


# ``constructor``: Keras optimisers that follow the protocol of ``l2o.optimizers.base``.
OPTIMIZERS = Registry("learned optimiser", "l2o.optimizers.base:MetaTrainable")
# ``problems[i]/target``: problems, or functions that build one.
PROBLEMS = Registry("problem", "l2o.problems.base:Problem", functions=True)
# ``strategy_constructor``: strategies.
STRATEGIES = Registry("strategy", "l2o.strategies.base:Strategy")
# ``estimator_constructor``: meta-gradient estimators, as a config chooses them.
ESTIMATORS = Registry("estimator", "l2o.estimators.base:EstimatorSpec")

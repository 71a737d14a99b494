"""Name -> class tables that configs choose from, filled by the classes' own modules.

A learned optimiser, problem or strategy registers itself where it is defined
(``@OPTIMIZERS.register("DM")``), so the config loader, the command line and
the run reader find it without naming it, and adding one touches one module.
A config may also name a class (or a function that builds one) by its import
name, ``"module:qualname"`` (``l2o.references``): what the Python API records
for a class or callable that is not registered.
"""

from l2o import references
from l2o.validation import check_choice


class Registry(dict):
    """A dict of name -> class whose lookups fail with the config key's name.

    ``aliases`` maps other names (the l2o toolkit's) to registered ones; an
    import name is looked up by importing it.
    """

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
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
        if references.is_reference(name):
            return references.load(self.kind, name)
        raise KeyError(name)

    def canonical(self, key, value):
        """The name a resolved config records for ``value``; a ConfigError naming ``key``
        if it has none.

        A registered name stays; an alias becomes the name it stands for; the
        import name of a registered class becomes its registered name, and that
        of any other class or function stays (it must import).
        """
        if references.is_reference(value):
            found = references.load(key, value)
            return next((name for name, cls in self.items() if cls is found), value)
        if isinstance(value, str):
            value = self.aliases.get(value, value)
        check_choice(key, value, self)
        return value

    def lookup(self, key, name):
        """The class registered as ``name`` (or imported); a ConfigError naming ``key`` otherwise."""
        return self[self.canonical(key, name)]


# ``constructor``: Keras optimisers that follow the protocol of ``l2o.optimizers.base``.
OPTIMIZERS = Registry("learned optimiser")
# ``problems[i]/target``: subclasses of ``l2o.problems.base.Problem``.
PROBLEMS = Registry("problem")
# ``strategy_constructor``: subclasses of ``l2o.strategies.base.Strategy``.
STRATEGIES = Registry("strategy")

"""Name -> class tables that configs choose from, filled by the classes' own modules.

A learned optimiser, problem or strategy registers itself where it is defined
(``@OPTIMIZERS.register("DM")``), so the config loader, the command line and
the run reader find it without naming it, and adding one touches one module.
"""

from l2o.validation import check_choice


class Registry(dict):
    """A dict of name -> class whose lookups fail with the config key's name."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, name):
        def decorate(cls):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = cls
            return cls

        return decorate

    def lookup(self, key, name):
        """The class registered as ``name``; a ConfigError naming ``key`` otherwise."""
        check_choice(key, name, self)
        return self[name]


# ``constructor``: Keras optimisers that follow the protocol of ``l2o.optimizers.base``.
OPTIMIZERS = Registry("learned optimiser")
# ``problems[i]/target``: subclasses of ``l2o.problems.base.Problem``.
PROBLEMS = Registry("problem")
# ``strategy_constructor``: subclasses of ``l2o.strategies.base.Strategy``.
STRATEGIES = Registry("strategy")

"""pytorch-optimize's names for ``ESOptimizer``'s arguments (``l2o.blackbox``'s docstring)."""

import abc
import enum
import types

import keras


class SamplingStrategy(enum.Enum):
    """pytorch-optimize's names for the ``strategy`` of ``ESOptimizer`` (its values)."""

    RANDOM = "random"
    BOTTOM_UP = "bottom_up"
    TOP_DOWN = "top_down"
    ALL = "all"


class Samples(types.SimpleNamespace):
    """pytorch-optimize's container for the data of one step: ``Samples(inputs=x, targets=y)``,
    or a dataclass subclass declaring the fields its objective reads. The objective receives
    it as given (so does any other value passed as ``samples``)."""


class Objective(abc.ABC):
    """pytorch-optimize's objective: ``objective(model, samples) -> float or list of K floats``,
    MAXIMISED (``mode="min"`` minimises). Subclassing only names the contract: any callable of
    that form is an objective."""

    @abc.abstractmethod
    def __call__(self, model, samples):
        """The objective value(s) of ``model`` as it stands (a candidate's weights) on ``samples``."""


class Model:
    """pytorch-optimize's model wrapper: a built Keras model ``net`` and the layers ES perturbs
    each step (``strategy``, a ``SamplingStrategy`` or its value; ``RANDOM`` by default, as
    there). ``forward(x)``, or calling the wrapper, runs ``net`` at its current weights.
    """

    def __init__(self, net, strategy=SamplingStrategy.RANDOM):
        if not isinstance(net, keras.Model):
            raise TypeError(f"net must be a keras.Model, got {type(net).__name__}")
        self.net, self.strategy = net, SamplingStrategy(strategy)

    def forward(self, inputs):
        return self.net(inputs)

    __call__ = forward

    def unwrap(self, objective, strategy):
        """``ESOptimizer``'s (model, objective, strategy) for this wrapper: the network, the
        objective called with a wrapper of the network (unless vectorised: that one receives
        stacked weights), and this wrapper's strategy, which ``strategy`` must not contradict.
        """
        if strategy is not None and SamplingStrategy(strategy) != self.strategy:
            raise ValueError(f"strategy is given twice: {SamplingStrategy(strategy).value!r} "
                             f"and the Model wrapper's {self.strategy.value!r}; give one")
        if callable(objective) and not getattr(objective, "vectorized", False):
            objective = _WrapperObjective(objective, self.strategy)
        return self.net, objective, self.strategy.value


class _WrapperObjective:
    """An objective written for ``Model`` wrappers, called by ES with the bare network.

    It wraps whichever network it is given (a worker's copy, too), so that the candidate's
    weights are the ones the objective sees.
    """

    def __init__(self, objective, strategy):
        self.objective, self.strategy = objective, strategy

    def __call__(self, net, samples):
        return self.objective(Model(net, self.strategy), samples)

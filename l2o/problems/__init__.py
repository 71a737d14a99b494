"""Inner problems: pure losses, deterministic data streams and equivalent Keras models.

Importing this package registers every problem in ``PROBLEMS`` (a config's
``problems[i]/target`` names one).
"""

from l2o.problems.base import Problem
from l2o.problems.classifiers import ConvClassifier, MLPClassifier
from l2o.problems.datasets import DataError
from l2o.problems.family import TaskFamily
from l2o.problems.landscapes import Carrillo, TwoMoons
from l2o.problems.quadratic import Quadratic
from l2o.problems.regression import TeacherStudent
from l2o.registry import PROBLEMS
from l2o.validation import ConfigError, first_line


def build(spec, field="problems/0"):
    """The problem a resolved config entry describes; data errors name the key."""
    target = PROBLEMS[spec["target"]]
    try:
        problem = target(*spec["args"], **spec["kwargs"])
    except DataError as error:
        raise ConfigError(f"{field}/kwargs/{error}") from None
    except TypeError as error:
        if isinstance(target, type):  # a problem class's keyword arguments are checked
            raise
        raise ConfigError(f"{field}/target: {spec['target']} failed on the config's "
                          f"arguments ({first_line(error)})") from None
    if not isinstance(problem, Problem):  # a function given as the target
        raise ConfigError(f"{field}/target: {spec['target']} built a {type(problem).__name__}, "
                          f"not an l2o.problems.Problem")
    return problem


__all__ = ["PROBLEMS", "Carrillo", "ConvClassifier", "MLPClassifier", "Problem", "Quadratic",
           "TaskFamily", "TeacherStudent", "TwoMoons", "build"]

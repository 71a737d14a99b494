"""l2o: learned optimisers for Keras 3 and TensorFlow.

    import l2o
    l2o.train("quickstart")                             # what train.py does (l2o.api)
    optimizer = l2o.load_optimizer("runs/quickstart")   # a meta-trained DMOptimizer
    model.compile(optimizer=optimizer, loss=...)
"""

from l2o import pretrained
from l2o.api import resume, train
from l2o.runs import load_optimizer

__version__ = "0.1.0"

__all__ = ["__version__", "load_optimizer", "pretrained", "resume", "train"]

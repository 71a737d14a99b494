"""The benchmarks, one package per subject; each runs as ``python -m benchmarks.<group>.<name>``
from the repository (``--help`` for its options). Results: docs/results/.

Importing the package sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless already set, before any benchmark
module loads Keras, so that TensorFlow's start-up lines stay out of the printed tables.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

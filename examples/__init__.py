"""Runnable examples of l2o, each run as ``python -m examples.<name>`` from the repository
(``--quick``: a few seconds)."""

"""Thin wrapper: `python baseline.py ...` is `l2o-baseline ...` (see l2o/cli.py)."""

from l2o.cli import baseline

if __name__ == "__main__":
    baseline()

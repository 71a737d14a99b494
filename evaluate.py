"""Thin wrapper: `python evaluate.py ...` is `l2o-evaluate ...` (see l2o/cli.py)."""

from l2o.cli import evaluate

if __name__ == "__main__":
    evaluate()

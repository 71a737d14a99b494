"""Thin wrapper: `python sweep.py ...` runs l2o.cli.sweep (see l2o/sweep.py)."""

from l2o.cli import sweep

if __name__ == "__main__":
    sweep()

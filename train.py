"""Thin wrapper: `python train.py ...` is `l2o-train ...` (see l2o/cli.py)."""

from l2o.cli import train

if __name__ == "__main__":
    train()

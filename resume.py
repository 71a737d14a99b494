"""Thin wrapper: `python resume.py ...` is `l2o-resume ...` (see l2o/cli.py)."""

from l2o.cli import resume

if __name__ == "__main__":
    resume()

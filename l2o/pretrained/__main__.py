"""``python -m l2o.pretrained list`` / ``export RUN NAME``: list or ship pretrained optimisers.

``export`` refuses a NAME that is not a plain identifier (it names files in this
folder, never a path) and, unless ``--overwrite``, one already shipped. A run, a
checkpoint or a name that cannot be used is one line on stderr and exit status 2.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

from l2o import checkpoints, pretrained, runs
from l2o.validation import ConfigError, first_line, shown

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name, overwrite=False):
    """A NAME ``export`` may write: a plain identifier, not shipped already unless
    ``overwrite``; a ConfigError saying what to do otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"NAME {shown(name)}: a pretrained optimiser's name is a plain "
                          f"identifier (letters, digits and _, such as my_mlp), not a path")
    if not overwrite and any(os.path.exists(os.path.join(pretrained.FOLDER, name + extension))
                             for extension in (".json", ".npz")):
        raise ConfigError(f"{pretrained.PREFIX}{name} is already shipped: choose another NAME, "
                          f"or pass --overwrite to replace it")


def export(directory, name, checkpoint="best", description="", recipe="", overwrite=False):
    """Writes run ``directory``'s ``checkpoint`` as the pretrained entry ``name``."""
    check_name(name, overwrite)
    config = runs.read_config(directory)
    meta_weights, info = runs.load_meta_weights(directory, checkpoint)
    path = os.path.join(pretrained.FOLDER, f"{name}.npz")
    # Renamed over the old entry once complete.
    checkpoints.atomic_write(path, lambda handle: np.savez(handle, **meta_weights),
                             suffix=".tmp.npz")
    record = {"constructor": config["constructor"], "network": config["network"],
              "description": description,
              "recipe": recipe,
              "checkpoint": checkpoint, "period": info.get("period"),
              "validation_meta_loss": info.get("validation_meta_loss")}
    checkpoints.write_text(os.path.join(pretrained.FOLDER, f"{name}.json"),
                           json.dumps(record, indent=2))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m l2o.pretrained",
                                     description="List or export pretrained optimisers.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="name each shipped optimiser")
    exporting = commands.add_parser("export", help="ship a run's checkpoint as NAME")
    exporting.add_argument("directory")
    exporting.add_argument("name", help="a plain identifier (letters, digits and _)")
    exporting.add_argument("--checkpoint", default="best")
    exporting.add_argument("--description", default="")
    exporting.add_argument("--recipe", default="", help="the command that reproduces the run")
    exporting.add_argument("--overwrite", action="store_true",
                           help="replace a shipped optimiser of the same NAME")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in pretrained.names():
            print(f"{name}: {pretrained.describe(name).get('description', '')}")
        return
    try:
        record = export(args.directory, args.name, args.checkpoint, args.description,
                        args.recipe, args.overwrite)
    except (ConfigError, OSError) as error:
        kind = "" if isinstance(error, ConfigError) else f"{type(error).__name__}: "
        print(f"error: {kind}{first_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {pretrained.PREFIX}{args.name} from {args.directory} (period {record['period']})")


if __name__ == "__main__":
    main()

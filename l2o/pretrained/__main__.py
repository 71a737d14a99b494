"""``python -m l2o.pretrained list`` / ``export RUN NAME``: list or ship pretrained optimisers."""

import argparse
import json
import os

import numpy as np

from l2o import checkpoints, pretrained, runs


def export(directory, name, checkpoint="best", description="", recipe=""):
    """Writes run ``directory``'s ``checkpoint`` as the pretrained entry ``name``."""
    config = runs.read_config(directory)
    meta_weights, info = runs.load_meta_weights(directory, checkpoint)
    np.savez(os.path.join(pretrained.FOLDER, f"{name}.npz"), **meta_weights)
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
    exporting.add_argument("name")
    exporting.add_argument("--checkpoint", default="best")
    exporting.add_argument("--description", default="")
    exporting.add_argument("--recipe", default="", help="the command that reproduces the run")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in pretrained.names():
            print(f"{name}: {pretrained.describe(name).get('description', '')}")
        return
    record = export(args.directory, args.name, args.checkpoint, args.description, args.recipe)
    print(f"wrote {pretrained.PREFIX}{args.name} from {args.directory} (period {record['period']})")


if __name__ == "__main__":
    main()

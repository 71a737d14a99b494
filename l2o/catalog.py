"""The configs shipped inside the package (``l2o/configs/*.yaml``), found by name.

They travel with ``pip install``, so ``l2o-train quickstart`` works from any
directory. Each file's first comment line is its one-line description.
"""

import os

from l2o.validation import ConfigError

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
SUFFIX = ".yaml"


def shipped():
    """``{name: description}`` of the shipped configs, sorted by name."""
    return {name[:-len(SUFFIX)]: _description(os.path.join(FOLDER, name))
            for name in sorted(os.listdir(FOLDER)) if name.endswith(SUFFIX)}


def config_path(argument):
    """The file ``argument`` means: an existing path, else a shipped config's name."""
    if os.path.isfile(argument):
        return argument
    name = argument.removesuffix(SUFFIX)
    if name in shipped():
        return os.path.join(FOLDER, name + SUFFIX)
    raise ConfigError(f"config file not found: {argument} (shipped configs: "
                      f"{', '.join(shipped())}; or give a path)")


def listing():
    """One line per shipped config: its name and description."""
    configs = shipped()
    width = max(map(len, configs))
    return "\n".join(f"{name:<{width}}  {text}" for name, text in configs.items())


def _description(path):
    with open(path) as handle:
        for line in handle:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""

"""The configs shipped inside the package (``l2o/configs/*.yaml``), found by name.

They travel with ``pip install``, so ``l2o-train quickstart`` works from any
directory. Each file's opening comment describes it; its first sentence, cut at a word
boundary with "..." where it is longer than ``DESCRIPTION_LENGTH``, is what ``--list``
shows.
"""

import os
import re

from l2o.validation import ConfigError, shortened

DESCRIPTION_LENGTH = 100
# A sentence ends at ". " before a capital, not after an abbreviation ("et al. (2016)").
_SENTENCE_END = re.compile(r"""(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bvs)\.(?=\s+["'A-Z]|$)""")

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
    """The first sentence of the file's opening comment (up to an indented example line)."""
    lines = []
    with open(path) as handle:
        for line in handle:
            if not line.startswith("#") or line.startswith("#  "):
                break
            lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = _SENTENCE_END.search(text)
    return shortened(text[:end.end()] if end else text, DESCRIPTION_LENGTH)

"""Reading config files and ``section/key=value`` overrides: YAML and JSON, no Keras.

A leaf of the config loader (``l2o.config`` re-exports what is here), light enough for the
commands to check a config file's syntax and sections before they import Keras and
TensorFlow, which takes seconds.
"""

import json
import os
import re

import yaml

from l2o.validation import ConfigError, first_line, unknown_key

# The estimator's options, as configs and run directories written before the ``estimator:``
# section kept them: flat keys of ``training``, beside ``training/estimator``.
FLAT_ESTIMATOR_KEYS = ("sigma", "n_particles", "horizon", "stagger")


def move_flat_estimator_keys(config):
    """Moves the old ``training/estimator`` to ``estimator_constructor`` and the old flat
    ``training/<option>`` keys into the ``estimator`` section, in place; returns the names of
    the options moved. A key given both ways is refused, naming the old one."""
    training = config.get("training")
    if not isinstance(training, dict):
        return set()
    if "estimator" in training:
        if "estimator_constructor" in config:
            raise ConfigError("training/estimator: the old place of estimator_constructor, "
                              "which is given too; keep one")
        config["estimator_constructor"] = training.pop("estimator")
    moved = {key: training.pop(key) for key in FLAT_ESTIMATOR_KEYS if key in training}
    section = config.setdefault("estimator", {})
    if moved and isinstance(section, dict):
        for key, value in moved.items():
            if key in section:
                raise ConfigError(f"training/{key}: the old place of estimator/{key}, which is "
                                  f"given too; keep one")
            section[key] = value
    return set(moved)

# The top-level sections of a config: ``l2o.config.DEFAULTS``'s keys.
SECTIONS = ("constructor", "network", "problems", "loss_args", "optimizer", "training",
            "strategy_constructor", "strategy", "estimator_constructor", "estimator", "evaluation",
            "directory", "distributed", "toolkit_only")


# The most values a YAML document's aliases (``*name``, ``<<: *name``) may add once
# expanded: far above any config, far below what exhausts memory. Nested aliases grow
# exponentially (a "billion laughs"), and the config's checks expand them.
MAX_EXPANDED_VALUES = 100_000


class YAMLExpansionError(yaml.YAMLError):
    """A YAML document whose aliases add more than ``MAX_EXPANDED_VALUES`` values once
    expanded, or expand into themselves."""


class _Loader(yaml.SafeLoader):
    """YAML with 1.2's floats: ``1e-3`` is a number, not the string YAML 1.1 makes of it;
    a document whose aliases expand too far, or into themselves, is refused before
    anything is built from it."""

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node


_CAP = 10 ** 15


def _check_expansion(root):
    """Raises YAMLExpansionError if expanding every alias in ``root`` would add more than
    ``MAX_EXPANDED_VALUES`` nodes to those written, or if ``root`` holds itself. A node the
    composer shared (an alias is the anchored node itself) is sized once and its size
    reused, so this is quick whatever the expansion."""
    sizes, open_nodes, pending = {}, set(), [(root, False)]
    while pending:  # depth first, children before parents, without recursion
        node, ready = pending.pop()
        if id(node) in sizes:
            continue
        children = [child for pair in node.value for child in pair] \
            if isinstance(node, yaml.MappingNode) else \
            list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if ready or not children:
            # Capped, so that the sizes of deep nesting stay small numbers.
            sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), _CAP)
            open_nodes.discard(id(node))
        elif id(node) in open_nodes:  # met again below itself
            raise YAMLExpansionError("an alias (*name) stands inside its own anchor (&name); "
                                     "a config cannot hold itself")
        else:
            open_nodes.add(id(node))
            pending.append((node, True))
            pending.extend((child, False) for child in children if id(child) not in sizes)
    if sizes[id(root)] - len(sizes) > MAX_EXPANDED_VALUES:  # len(sizes): the nodes written
        raise YAMLExpansionError(f"its aliases (*name) expand to more than "
                                 f"{MAX_EXPANDED_VALUES} values; write the values out, or "
                                 f"alias fewer of them")


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


def yaml_load(text):
    return yaml.load(text, Loader=_Loader)


def load_file(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as handle:
        text = handle.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{first_line(error)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read; a config is a few levels of "
                          f"sections") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return data


def parse_override(text):
    """``"a/b/0/c=value"`` -> (["a", "b", 0, "c"], parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section/key=value")
    path, raw = text.split("=", 1)
    keys = [int(k) if k.isdigit() else k for k in path.strip("/").split("/")]
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except YAMLExpansionError as error:
        raise ConfigError(f"{path.strip('/')}: {error}") from None
    except yaml.YAMLError:
        value = raw
    return keys, value


def check_sections(config, where=""):
    """Raises ConfigError for a top-level key of ``config`` that is no section."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"{where}{unknown_key(key, key, SECTIONS)}")

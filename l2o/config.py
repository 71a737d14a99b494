"""Run configuration: defaults, loading, command-line overrides and validation.

A config is plain data (JSON or YAML). ``DEFAULTS`` below holds every top-level
default; the defaults of a section that depends on a choice (``network`` on
``constructor``, ``strategy`` on ``strategy_constructor``, a problem's
``kwargs`` on its ``target``) are the keyword defaults of the class chosen, so
each lives in exactly one place. ``resolve`` merges the file over the defaults,
applies ``section/key=value`` overrides, fills the dependent defaults and
validates every key before any work starts; errors are ``ConfigError`` naming
the key.

The l2o toolkit's configs load as they are: callables and classes given through
the Python API are written as import names (``l2o.import_names``), its class
names are aliases (``CurriculumLearning``), and its keys that mean nothing here
(``TOOLKIT_ONLY``) are kept in the ``toolkit_only`` section.
"""

import copy

import l2o.optimizers
import l2o.problems
import l2o.strategies  # noqa: F401
from l2o import distributed, import_names
from l2o.config_files import (  # noqa: F401  (re-exported: the loader's public names)
    FLAT_ESTIMATOR_KEYS,
    MAX_EXPANDED_VALUES,
    YAMLExpansionError,
    load_file,
    move_flat_estimator_keys,
    parse_override,
    yaml_load,
)
from l2o.estimators.unroll import META_OBJECTIVES, objective_needs, step_weights
from l2o.problems.base import offered
from l2o.registry import ESTIMATORS, OPTIMIZERS, PROBLEMS, STRATEGIES
from l2o.validation import (
    ConfigError,
    check_choice,
    check_keras_optimizer,
    check_learning_rate,
    check_network,
    check_spec,
    check_tree,
    fill_spec,
    first_line,
    signature_defaults,
    unknown_key,
)

DEFAULTS = {
    # Learned optimiser: a name registered in l2o.registry.OPTIMIZERS.
    "constructor": "DM",
    # Keyword arguments of the learned optimiser's update rule.
    "network": {},
    # Inner problems meta-trained on; `target` names a class in l2o.problems.
    "problems": [{"target": "mlp_classifier", "args": [], "kwargs": {}}],
    # How inner losses become the meta-loss (see l2o/estimators/unroll.py). The epsilons
    # are the l2o toolkit's: they also keep a loss of exactly 0 finite under the log.
    "loss_args": {
        "scale_objective": True,
        "use_log_objective": True,
        "obj_train_max_multiplier": -1.0,
        "epsilon": 1e-6,
        "use_numerator_epsilon": True,
    },
    # Meta-optimiser: any Keras optimiser, as keras.optimizers.get accepts it.
    "optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.001}},
    "training": {
        "seed": 0,
        # Independent inner trajectories per problem per strategy epoch.
        "epochs": 1,
        # Truncations (meta-updates) per trajectory; 0: as many as one pass over the
        # problem's training data takes (the l2o toolkit's "no resets").
        "depth": 5,
        # Meta-updates on the same truncation before the trajectory moves on.
        "repeat": 1,
        # Keep trajectories alive across strategy epochs instead of restarting.
        "persistent": False,
        # How an epoch's trajectories (problems x epochs) update the meta-weights:
        # sequential (each truncation is a meta-update, the trajectories in turn) or
        # averaged (one truncation of every trajectory at the same meta-weights, their
        # meta-gradients averaged into one meta-update; what TBPTT runs on Ray workers).
        "meta_batch": "sequential",
        # Weights of the per-step terms of the meta-loss: sum, mean or final.
        "unroll_weights": "mean",
        # What each inner step scores (the PES paper's objectives): train_sum_loss, the
        # training loss; val_sum_loss, the loss on a validation minibatch after the step;
        # train_sum_acc and val_sum_acc, accuracies, maximised (ES and PES only).
        "meta_objective": "train_sum_loss",
        # The floor (ES and PES, loss objectives): each inner run also runs Adam at
        # floor_learning_rate from the same start on the same batches, and every step
        # where the learned rule scores worse adds floor_weight times the log of the gap
        # to the meta-loss (0: off; l2o/estimators/unroll.py).
        "floor_weight": 0.0,
        "floor_learning_rate": 0.001,
        # Differentiate through the inner gradients (False: the DM paper's
        # cheaper first-order approximation).
        "second_order": True,
        # XLA for the unroll: true, false, or auto (false on CPU, where it
        # measured slower; true on accelerators).
        "jit_compile": "auto",
        # Random scaling of Lv et al.: each trajectory's loss is f(c * theta) with
        # c = exp(U(-s, s)) per coordinate (0: off).
        "parameter_scale_spread": 0.0,
        # Imitation: Keras optimisers ({class_name, config}) to imitate, the
        # probability that a truncation imitates one (times the strategy's
        # annealing_schedule), and an optimiser for those updates (null: `optimizer`).
        "teachers": [],
        "p_teacher": 0.0,
        "imitation_optimizer": None,
        # Stop the run after a period in which no meta-update was finite (and at the end
        # of one without a finite validation meta-loss); false: warn and go on.
        "stop_on_nonfinite": True,
    },
    "strategy_constructor": "Simple",
    "strategy": {},
    # Meta-gradient estimator: a name registered in l2o.registry.ESTIMATORS (tbptt, es:
    # truncated ES, pes: Persistent ES; l2o/estimators/), and its options, whose defaults
    # are the keyword defaults of the chosen EstimatorSpec.
    "estimator_constructor": "tbptt",
    "estimator": {},
    "evaluation": {
        "steps": 100,
        "repeats": 10,
        "seed": 1000,
        # Problems to evaluate on; null means the training problems.
        "problems": None,
        # Every how many steps validation loss and accuracy are measured.
        "validation_every": 10,
        # Keras optimiser for baseline.py, and an optional learning-rate grid.
        "baseline": {"class_name": "Adam", "config": {"learning_rate": 0.001},
                     "learning_rates": []},
    },
    "directory": "runs/dm",
    # Ray workers for ES/PES particles or TBPTT trajectories (l2o/distributed.py; README,
    # "Distributed (Ray)"):
    # how many (0: none, all in this process), the cluster to join (null: start a
    # private one on this machine) and the Ray resources each worker reserves.
    "distributed": {"workers": 0, "address": None, "cpus_per_worker": 1.0,
                    "gpus_per_worker": 0.0},
    # Keys of l2o toolkit configs that mean nothing here, as given (see TOOLKIT_ONLY).
    "toolkit_only": {},
}

# Keys of the l2o toolkit's configs that l2o has no use for, with an example value of
# their type. Where the chosen class does not take one, it moves, as given, to the
# resolved config's ``toolkit_only`` section (recorded, never dropped); README,
# "Coming from the l2o toolkit", says why each means nothing here. Values l2o could not
# honour are refused (``_check_toolkit_only``).
TOOLKIT_ONLY = {
    "network/name": "",
    "network/use_bias": True,
    "network/unit_forget_bias": True,
    "training/strategy": "mean",
}

UNROLL_WEIGHTS = ("sum", "mean", "final")
CHOICES = {
    "training/jit_compile": ("auto", True, False),
    "training/meta_batch": ("sequential", "averaged"),
    "training/meta_objective": META_OBJECTIVES,
}
# Keys whose values may take more than one type; their own checks validate them.
UNTYPED = {"training/jit_compile", "strategy/unroll_distribution", "strategy/schedule",
           "strategy/annealing_schedule"}
POSITIVE_INTS = {
    "training/epochs", "training/repeat",
    "evaluation/steps", "evaluation/repeats", "evaluation/validation_every",
}
NON_NEGATIVE = {"loss_args/epsilon", "training/parameter_scale_spread",
                "training/floor_weight"}


def resolve(base=None, overrides=()):
    """The validated, fully resolved config.

    ``base`` is a mapping (a loaded file, or a run's ``config.json``);
    ``overrides`` are ``section/key=value`` strings, applied in order.
    """
    # The old flat keys (training/estimator, training/sigma, ...) of a config or a run
    # directory written before the estimator section, or of an override, go to their places.
    base = import_names.dump(dict(base or {}))  # a new mapping: the caller's stays as given
    moved = move_flat_estimator_keys(base)
    config = _merge(copy.deepcopy(DEFAULTS), base)
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) == 2 and keys[0] == "training" and keys[1] == "estimator":
            keys = ["estimator_constructor"]
        elif len(keys) == 2 and keys[0] == "training" and keys[1] in FLAT_ESTIMATOR_KEYS:
            moved.add(keys[1])
            keys = ["estimator", keys[1]]
        _set_path(config, keys, value)
    _fill_dependent_defaults(config, moved)
    validate(config)
    return config


def _merge(defaults, update):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict) and defaults[key]:
            defaults[key] = _merge(defaults[key], value)
        else:
            defaults[key] = copy.deepcopy(value)
    return defaults


def _set_path(config, keys, value):
    node = config
    for depth, key in enumerate(keys):
        name = "/".join(str(k) for k in keys[:depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not isinstance(key, int) or not 0 <= key < len(node):
                raise ConfigError(f"{name}: no such list entry (the list has {len(node)})")
        elif isinstance(node, dict):
            if isinstance(key, int):
                key = str(key)
            if key not in node and not last:
                if depth == 0:
                    raise ConfigError(unknown_key(name, key, node))
                node[key] = {}
        else:
            raise ConfigError(f"{name}: cannot set a key inside a {type(node).__name__} value")
        if last:
            node[key] = value
        else:
            node = node[key]


def _fill_dependent_defaults(config, moved=frozenset()):
    for section in ("loss_args", "optimizer", "training", "evaluation", "toolkit_only"):
        if not isinstance(config.get(section), dict):
            raise ConfigError(f"{section}: must be a mapping, got {config.get(section)!r}")
    config["constructor"] = OPTIMIZERS.canonical("constructor", config.get("constructor"))
    config["strategy_constructor"] = STRATEGIES.canonical("strategy_constructor",
                                                          config.get("strategy_constructor"))
    config["estimator_constructor"] = ESTIMATORS.canonical("estimator_constructor",
                                                           config.get("estimator_constructor"))
    if not isinstance(config.get("estimator"), dict):
        raise ConfigError(f"estimator: must be a mapping, got {config.get('estimator')!r}")
    estimator_defaults = signature_defaults(ESTIMATORS[config["estimator_constructor"]])
    for key in moved - set(estimator_defaults):
        # Old configs carried every flat option whatever the estimator; those it does not
        # take meant nothing there.
        del config["estimator"][key]
    config["estimator"] = _merge(estimator_defaults, config["estimator"])
    rule_class = OPTIMIZERS[config["constructor"]].rule_class
    for section, cls in (("network", rule_class),
                         ("strategy", STRATEGIES[config["strategy_constructor"]])):
        if not isinstance(config.get(section), dict):
            raise ConfigError(f"{section}: must be a mapping")
    _set_aside_toolkit_keys(config, {"network": signature_defaults(rule_class),
                                     "training": DEFAULTS["training"]})
    for section, cls in (("network", rule_class),
                         ("strategy", STRATEGIES[config["strategy_constructor"]])):
        config[section] = _merge(signature_defaults(cls), config[section])
    for field in ("problems", "evaluation/problems"):
        specs = config["problems"] if field == "problems" else config["evaluation"]["problems"]
        if specs is None and field != "problems":
            continue
        if not isinstance(specs, list) or not specs:
            raise ConfigError(f"{field}: must be a non-empty list of problems")
        for index, spec in enumerate(specs):
            fill_spec(f"{field}/{index}", spec, PROBLEMS)


def _set_aside_toolkit_keys(config, takes):
    """Moves the ``TOOLKIT_ONLY`` keys that ``takes`` (section -> keys) lacks to ``toolkit_only``."""
    for name in TOOLKIT_ONLY:
        section, key = name.split("/")
        if key in config[section] and key not in takes[section]:
            config["toolkit_only"][name] = config[section].pop(key)


def _check_toolkit_only(config):
    aside = config["toolkit_only"]
    check_tree("", aside, TOOLKIT_ONLY)
    if aside.get("network/use_bias", True) is not True:
        raise ConfigError("network/use_bias: l2o's cells always have biases; only true can be "
                          "honoured, got false")
    strategy = aside.get("training/strategy", "mean")
    check_choice("training/strategy", strategy, ("mean", "max"))
    if strategy == "max" and len(config["training"]["teachers"]) > 1:
        raise ConfigError("training/strategy: max (imitate the worst-matched teacher) is not "
                          "implemented: each imitation truncation follows one teacher drawn "
                          "uniformly, which is mean in expectation; use mean or one teacher")


def validate(config):
    """Checks every key against the defaults' keys and types; raises ConfigError."""
    reference = copy.deepcopy(DEFAULTS)
    reference["strategy"] = signature_defaults(STRATEGIES[config["strategy_constructor"]])
    check_tree("", config, reference, UNTYPED)
    config["network"] = check_network(OPTIMIZERS[config["constructor"]].rule_class,
                                      config["network"])
    for field, specs in (("problems", config["problems"]),
                         ("evaluation/problems", config["evaluation"]["problems"] or [])):
        for index, spec in enumerate(specs):
            check_spec(f"{field}/{index}", spec, PROBLEMS)
    for name, options in CHOICES.items():
        check_choice(name, _get(config, name), options)
    weights = import_names.callable_or_checked(
        "training/unroll_weights", config["training"]["unroll_weights"],
        lambda value: check_choice("training/unroll_weights", value, UNROLL_WEIGHTS))
    if callable(weights):
        _check_unroll_weights(weights)
    if config["training"]["depth"] < 0:
        raise ConfigError(f"training/depth: must be at least 0 (0: one pass over the training "
                          f"data per trajectory), got {config['training']['depth']}")
    for name in POSITIVE_INTS:
        if _get(config, name) < 1:
            raise ConfigError(f"{name}: must be at least 1, got {_get(config, name)}")
    for name in NON_NEGATIVE:
        if not 0 <= _get(config, name) < float("inf"):  # NaN fails both comparisons
            raise ConfigError(f"{name}: must be finite and non-negative, "
                              f"got {_get(config, name)}")
    if not isinstance(config["directory"], str) or not config["directory"].strip():
        raise ConfigError(f"directory: must be a non-empty path, got {config['directory']!r}")
    check_keras_optimizer("optimizer", config["optimizer"])
    training = config["training"]
    _check_toolkit_only(config)
    for index, spec in enumerate(training["teachers"]):
        check_keras_optimizer(f"training/teachers/{index}", spec)
    if training["imitation_optimizer"] is not None:
        check_keras_optimizer("training/imitation_optimizer", training["imitation_optimizer"])
    if not 0.0 <= training["p_teacher"] <= 1.0:
        raise ConfigError(f"training/p_teacher: must be a probability, got {training['p_teacher']}")
    if training["p_teacher"] > 0 and not training["teachers"]:
        raise ConfigError("training/p_teacher: is positive but training/teachers is empty")
    # The estimator's section against its class's defaults, here rather than in the tree
    # above (where DEFAULTS leaves it empty: free-form), so that a class without options
    # (tbptt) refuses every key.
    estimator = ESTIMATORS[config["estimator_constructor"]]
    options = signature_defaults(estimator)
    if not options and config["estimator"]:
        raise ConfigError(f"estimator/{next(iter(config['estimator']))}: unknown key; "
                          f"estimator_constructor {config['estimator_constructor']} takes no "
                          f"options")
    check_tree("estimator/", config["estimator"], options)
    estimator.validate_config(config["estimator"], config)
    _check_meta_objective(config)
    OPTIMIZERS[config["constructor"]].validate_run_config(config)
    baseline = config["evaluation"]["baseline"]
    baseline["learning_rates"] = [
        check_learning_rate(f"evaluation/baseline/learning_rates/{index}", rate)
        for index, rate in enumerate(baseline["learning_rates"])]
    check_keras_optimizer("evaluation/baseline",
                           {"class_name": baseline["class_name"], "config": baseline["config"]})
    STRATEGIES[config["strategy_constructor"]].validate_config(config["strategy"])
    distributed.check_config(config)
    return config


def _check_unroll_weights(weights):
    """A callable's weights for n = 3 steps, as the unroll takes them: one per step, here
    rather than as a shape error deep inside the compiled unroll."""
    try:
        shape = tuple(step_weights(weights, 3, "float32").shape)
    except Exception as error:  # noqa: BLE001  (whatever the user's callable raises)
        raise ConfigError(f"training/unroll_weights: failed for n = 3 steps "
                          f"({first_line(error)})") from None
    if shape != (3,):
        raise ConfigError(f"training/unroll_weights: gave {shape[0]} weights for n = 3 steps; "
                          f"it must give one per step")


def _check_meta_objective(config):
    """Every training problem must have what the meta-objective scores; the floor needs a
    loss objective and a positive rate."""
    objective = config["training"]["meta_objective"]
    needs = objective_needs(objective)
    training = config["training"]
    if training["floor_weight"] > 0 and "accuracy" in needs:
        raise ConfigError(f"training/floor_weight: the floor compares losses; "
                          f"training/meta_objective {objective} scores accuracy")
    if not training["floor_learning_rate"] > 0:
        raise ConfigError(f"training/floor_learning_rate: must be > 0, got "
                          f"{training['floor_learning_rate']!r}")
    for index, spec in enumerate(config["problems"]):
        missing = needs - offered(PROBLEMS[spec["target"]], spec["kwargs"])
        if missing:
            raise ConfigError(f"problems/{index}/target: {spec['target']} has no "
                              f"{' and no '.join(sorted(missing))}, which training/meta_objective "
                              f"{objective} scores")


def _get(config, name):
    node = config
    for key in name.split("/"):
        node = node[key]
    return node

"""Users of the original l2o toolkit: its README's sample config, keys, defaults, class names and
Python callables work here (docs/migrating/l2o-toolkit.md). The toolkit's README is read
from ../shared/upstream/l2o-toolkit.md."""

import ast
import json
import math
import os
import re

import numpy as np
import pytest
from conftest import MNIST, ROOT, tiny_config
from keras import ops

import l2o
from l2o import cli, import_names, problems
from l2o.config import DEFAULTS, TOOLKIT_ONLY, resolve
from l2o.estimators.unroll import meta_loss
from l2o.optimizers import DMOptimizer
from l2o.problems import MLPClassifier
from l2o.strategies import CurriculumStrategy, SimpleStrategy
from l2o.trainer import MetaTrainer
from l2o.validation import ConfigError

UPSTREAM = os.path.normpath(os.path.join(ROOT, "..", "shared", "upstream", "l2o-toolkit.md"))
MIGRATING = os.path.join(ROOT, "docs", "migrating", "l2o-toolkit.md")


def upstream_readme():
    if not os.path.isfile(UPSTREAM):
        pytest.skip(f"the l2o toolkit's README is not at {UPSTREAM}")
    with open(UPSTREAM) as handle:
        return handle.read()


def sample_config():
    """The JSON block of the toolkit's README, as it is."""
    return json.loads(re.search(r"```json\n(.*?)```", upstream_readme(), re.DOTALL).group(1))


def summaries(directory):
    return [json.loads(line) for line in (directory / "summary.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_toolkit_sample_config_trains_and_resumes(tmp_path, monkeypatch):
    """The toolkit's sample config trains and resumes here with only `dataset` changed, to
    data this machine has."""
    config = sample_config()
    config["problems"][0]["kwargs"]["dataset"] = MNIST if os.path.isdir(MNIST) else "digits"
    (tmp_path / "sample.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)  # its directory, "weights", lands here
    short = ["strategy/num_periods=1", "strategy/epochs_per_period=2"]
    assert l2o.train("sample.json", short)["period"] == 0
    assert l2o.resume("weights", ["strategy/num_periods=2"])["period"] == 1

    run = tmp_path / "weights"
    assert [line["period"] for line in summaries(run)] == [0, 1]
    # p_teacher 1 times annealing exp(-0.5 i): period 0 imitates Adam on every truncation.
    assert "train_imitation_loss" in summaries(run)[0]
    assert "train_meta_loss" not in summaries(run)[0]
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["toolkit_only"] == {"network/name": "DMOptimizer", "network/use_bias": True,
                                        "training/strategy": "mean"}
    assert recorded["loss_args"] == {**config["loss_args"], "obj_train_max_multiplier": -1.0}
    assert recorded["strategy"]["unroll_distribution"] == 0.05


def test_toolkit_keys_are_recorded_and_what_cannot_be_honoured_is_refused():
    resolved = resolve(sample_config())
    assert resolved["network"]["unit_forget_bias"] is True  # DM's LSTM takes it
    assert "name" not in resolved["network"] and "strategy" not in resolved["training"]
    assert resolve(resolved) == resolved  # config.json reads back to itself
    hierarchical = resolve({"constructor": "ScaleHierarchical",
                            "network": {"unit_forget_bias": True, "name": "H"}})
    assert hierarchical["toolkit_only"] == {"network/unit_forget_bias": True, "network/name": "H"}

    with pytest.raises(ConfigError, match="network/use_bias: l2o's cells always have biases"):
        resolve({}, ["network/use_bias=false"])
    two_teachers = {"training": {"strategy": "max", "p_teacher": 0.5, "teachers": [
        {"class_name": "Adam", "config": {}}, {"class_name": "SGD", "config": {}}]}}
    with pytest.raises(ConfigError, match="training/strategy: max .* is not implemented"):
        resolve(two_teachers)
    two_teachers["training"]["strategy"] = "mean"
    resolve(two_teachers)
    with pytest.raises(ConfigError, match="training/strategy: unknown value 'median'"):
        resolve({}, ["training/strategy=median"])


def test_toolkit_names_and_classes_resolve_to_ours():
    config = resolve({"constructor": DMOptimizer, "strategy_constructor": "CurriculumLearning",
                      "problems": [{"target": MLPClassifier, "kwargs": {}}]})
    assert (config["constructor"], config["strategy_constructor"],
            config["problems"][0]["target"]) == ("DM", "Curriculum", "mlp_classifier")
    assert resolve({"strategy_constructor": SimpleStrategy})["strategy_constructor"] == "Simple"
    with pytest.raises(ConfigError, match="strategy_constructor: unknown value 'Curriculm'; "
                                          "did you mean 'Curriculum'"):
        resolve({"strategy_constructor": "Curriculm"})


def _same(theirs, ours):
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)) \
            and not isinstance(theirs, bool) and not isinstance(ours, bool):
        return math.isclose(theirs, ours, rel_tol=1e-9)
    if isinstance(theirs, list) and isinstance(ours, list):
        return len(theirs) == len(ours) and all(map(_same, theirs, ours))
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return theirs.keys() == ours.keys() and all(_same(theirs[k], ours[k]) for k in theirs)
    return theirs == ours


def _literal(text):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # an unquoted string: [str=Adam]
    return list(value) if isinstance(value, tuple) else value


# The classes whose defaults a section of the toolkit's README documents, by its heading.
SECTIONS = {"Hierarchical": ("constructor", "ScaleHierarchical"),
            "Coordinatewise": ("constructor", "ScaleBasic"),
            "RNNProp": ("constructor", "RNNProp"), "DMOptimizer": ("constructor", "DM"),
            "Simple Training": ("strategy_constructor", "Simple"),
            "Curriculum": ("strategy_constructor", "Curriculum")}
KEY = re.compile(r"^- ```(?P<key>[\w/<>]+) \[[\w\[\]]+?=(?P<default>[^|\]]*?)\s*(?:\|.*?)?\]```",
                 re.MULTILINE)


def documented_defaults():
    """``(key, the toolkit's default, ours)`` for every key its README gives a default."""
    found, resolved = [], resolve({})
    for line in upstream_readme().splitlines():
        if line.startswith("#"):
            resolved = resolve(next(({key: name} for heading, (key, name) in SECTIONS.items()
                                     if heading in line), {}))
        match = KEY.match(line.strip())
        if match:
            ours = resolved
            for part in match["key"].split("/"):
                ours = ours.get(part, KeyError) if isinstance(ours, dict) else KeyError
            found.append((match["key"], _literal(match["default"]), ours))
    return found


def test_toolkit_defaults_are_ours_or_a_documented_difference():
    with open(MIGRATING) as handle:
        section = handle.read()
    defaults = documented_defaults()
    assert len(defaults) > 50, "the toolkit's README no longer parses"
    differences = set()
    for key, theirs, ours in defaults:
        if key in TOOLKIT_ONLY:
            assert f"`{key}`" in section, key
        elif ours is KeyError or not _same(theirs, ours):
            differences.add(key)
            assert f"| `{key}` |" in section, f"{key}: {theirs!r} there, {ours!r} here"
    # The defaults adopted from the toolkit stay adopted.
    assert not differences & {"loss_args/epsilon", "loss_args/use_numerator_epsilon",
                              "strategy/num_periods", "strategy/unroll_distribution",
                              "strategy/annealing_schedule", "strategy/min_periods"}
    assert DEFAULTS["loss_args"]["epsilon"] == 1e-6


def test_depth_zero_runs_one_pass_over_the_training_data(tmp_path):
    """The toolkit's depth 0 (no resets): truncations while they fit in one pass (>= 1)."""
    trainer = MetaTrainer(resolve(tiny_config(tmp_path), ["training/depth=0"]))
    steps = trainer.problems[0].steps_per_pass()
    assert steps == len(trainer.problems[0].data["y_train"]) // 32
    lengths = []
    trainer.train_epoch(0, 0, lambda generator: 5,
                        on_truncation=lambda meta_loss, steps: lengths.append(steps))
    assert lengths == [5] * (steps // 5)
    lengths.clear()
    trainer.train_epoch(0, 1, lambda generator: steps + 1,
                        on_truncation=lambda meta_loss, steps: lengths.append(steps))
    assert lengths == [steps + 1]  # a truncation longer than a pass still runs, once

    with pytest.raises(ConfigError, match="training/depth: 0 runs each trajectory for one pass "
                                          "over its training data, and problems/0 has none"):
        MetaTrainer(resolve({"problems": [{"target": "quadratic"}]}, ["training/depth=0"]))
    with pytest.raises(ConfigError, match="training/depth: must be at least 0"):
        resolve({}, ["training/depth=-1"])


def test_a_list_schedule_shorter_than_max_stages_ends_the_curriculum():
    """It gave the next stage an unroll length of None; a list limits the stages to its length,
    as the toolkit documented."""
    progress = {"stage": 0, "periods": 1, "stage_best": 1.0, "best_before": 2.0,
                "finished": True}
    strategy = CurriculumStrategy(schedule=[3], max_stages=2)
    assert strategy.should_stop(progress)
    assert not CurriculumStrategy(schedule=[3, 5], max_stages=2).should_stop(progress)
    assert CurriculumStrategy(schedule=[3, 5], max_stages=1).should_stop(progress)


def test_the_curriculum_asks_no_schedule_for_a_stage_past_max_stages():
    progress = {"stage": 0, "periods": 1, "stage_best": 1.0, "best_before": 2.0,
                "finished": True}
    asked = []

    def schedule(stage):
        asked.append(stage)
        return 10

    assert CurriculumStrategy(schedule=schedule, max_stages=1).should_stop(progress)
    assert asked == []
    assert not CurriculumStrategy(schedule=schedule, max_stages=2).should_stop(progress)
    assert asked == [1]


# Module-level callables: their import names ("test_toolkit:...") go into config.json.
DRAWN = []


def annealing(period):
    return 0.5 ** period


def two_or_three(generator):
    DRAWN.append(int(2 + generator.integers(2)))
    return DRAWN[-1]


def final_step(n):
    return ops.one_hot(n - 1, n)


def small_digits_mlp(width=8, batch_size=32):
    return MLPClassifier(layers=[width], batch_size=batch_size)


@pytest.mark.slow
def test_the_python_api_takes_callables_and_resume_rebuilds_them(tmp_path):
    config = tiny_config(tmp_path / "run", constructor=DMOptimizer,
                         strategy_constructor=SimpleStrategy,
                         problems=[{"target": small_digits_mlp, "kwargs": {"width": 6}}],
                         training={"unroll_weights": final_step, "depth": 2},
                         strategy={"num_periods": 1, "epochs_per_period": 1,
                                   "unroll_distribution": two_or_three,
                                   "annealing_schedule": annealing})
    DRAWN.clear()
    l2o.train(config)
    assert len(DRAWN) == 2
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    module = __name__
    assert recorded["strategy"]["unroll_distribution"] == f"{module}:two_or_three"
    assert recorded["strategy"]["annealing_schedule"] == f"{module}:annealing"
    assert recorded["training"]["unroll_weights"] == f"{module}:final_step"
    assert recorded["problems"][0]["target"] == f"{module}:small_digits_mlp"
    assert recorded["problems"][0]["kwargs"] == {"width": 6, "batch_size": 32}
    assert (recorded["constructor"], recorded["strategy_constructor"]) == ("DM", "Simple")

    assert l2o.resume(str(tmp_path / "run"), ["strategy/num_periods=2"])["period"] == 1
    assert len(DRAWN) == 4


def test_unroll_weights_callable_weighs_the_meta_loss():
    losses = ops.convert_to_tensor(np.array([4.0, 2.0, 1.0]))
    plain = {**DEFAULTS["loss_args"], "scale_objective": False, "use_log_objective": False,
             "epsilon": 0.0}
    assert float(meta_loss(losses, 4.0, plain, final_step)) == pytest.approx(1.0)
    assert float(meta_loss(losses, 4.0, plain, lambda n: ops.arange(n))) == pytest.approx(4.0)


def test_resume_refuses_a_run_made_from_a_lambda_in_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    config = resolve(tiny_config(run, strategy={"annealing_schedule": lambda i: 1.0}))
    assert import_names.THIS_PROCESS_ONLY in config["strategy"]["annealing_schedule"]
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    assert resolve(json.loads((run / "config.json").read_text())) == config  # same process
    monkeypatch.setattr(import_names, "_kept", {})  # what another process knows of it
    with pytest.raises(SystemExit) as refused:
        cli.resume([str(run)])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith(
        f"error: strategy/annealing_schedule: {__name__}:"), error
    assert "(a lambda has no importable name); define it at the top level of a module" in error


def mlp_of_width(width, batch_size=32):
    return MLPClassifier(layers=[width], batch_size=batch_size)


def mistyped_mlp(width=8):
    return MLPClassifier(layers=["w" + width])


def not_a_problem(width=8):
    return {"width": width}


@pytest.mark.parametrize("name, value, message", [
    ("problems", [{"target": "json:loads"}],
     ("problems/0/target: json:loads is a function of the standard library, not a problem "
      "(a subclass of l2o.problems.base:Problem, or a function outside the standard library "
      "that builds one)")),
    ("problems", [{"target": "l2o.problems.base:Problem"}],
     "problems/0/target: l2o.problems.base:Problem is the base class itself, not a problem"),
    ("constructor", "collections:OrderedDict",
     ("constructor: collections:OrderedDict is another class, not a learned optimiser "
      "(a subclass of l2o.optimizers.base:MetaTrainable)")),
    ("constructor", "keras.optimizers:Adam", "constructor: keras.optimizers:Adam is another class"),
    ("strategy_constructor", "math:sqrt",
     ("strategy_constructor: math:sqrt is a function, not a strategy "
      "(a subclass of l2o.strategies.base:Strategy)")),
    ("problems", [{"target": "math:pi"}], "problems/0/target: math:pi is a float, not a problem"),
])
def test_an_import_name_in_a_config_gives_only_what_its_key_takes(name, value, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        resolve({name: value})


def test_a_config_cannot_make_a_problem_of_a_shell_command(tmp_path, capsys):
    marker = tmp_path / "ran"
    config = tmp_path / "config.yaml"
    config.write_text(f"problems: [{{target: 'os:system', kwargs: {{command: 'touch {marker}'}}}}]\n"
                      f"directory: {tmp_path / 'run'}\n")
    with pytest.raises(SystemExit) as refused:
        cli.train([str(config)])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith(
        "error: problems/0/target: os:system is a function of the standard library"), error
    assert not marker.exists()


def test_the_pio_optimiser_and_problem_functions_are_what_configs_may_name():
    config = resolve({"constructor": "l2o.optimizers.pio:PIOOptimizer",
                      "problems": [{"target": f"{__name__}:mlp_of_width", "args": [6]}]})
    assert (config["constructor"], config["problems"][0]["kwargs"]) == (
        "PIO", {"width": 6, "batch_size": 32})


def test_a_problem_function_that_fails_or_builds_no_problem_names_the_target():
    spec = resolve({"problems": [{"target": mistyped_mlp}]})["problems"][0]
    with pytest.raises(ConfigError, match="^" + re.escape(
            f"problems/3/target: {__name__}:mistyped_mlp failed on the config's arguments "
            f"(can only concatenate str")):
        problems.build(spec, "problems/3")
    spec = resolve({"problems": [{"target": not_a_problem}]})["problems"][0]
    with pytest.raises(ConfigError, match="^" + re.escape(
            f"problems/0/target: {__name__}:not_a_problem built a dict, not an "
            f"l2o.problems.Problem")):
        problems.build(spec)


def test_a_required_parameter_of_a_problem_function_must_be_given():
    with pytest.raises(ConfigError, match=r"^problems/0/kwargs/width: required$"):
        resolve({"problems": [{"target": mlp_of_width}]})
    with pytest.raises(ConfigError, match=r"^evaluation/problems/0/kwargs/width: required$"):
        resolve({"evaluation": {"problems": [{"target": mlp_of_width, "kwargs": {}}]}})


@pytest.mark.parametrize("key, override", [
    ("training/unroll_weights", {"training": {"unroll_weights": "math:pi"}}),
    ("strategy/annealing_schedule", {"strategy": {"annealing_schedule": "math:pi"}}),
    ("strategy/unroll_distribution", {"strategy": {"unroll_distribution": "math:pi"}}),
    ("strategy/schedule", {"strategy_constructor": "Curriculum",
                           "strategy": {"schedule": "math:pi"}}),
])
def test_every_key_that_takes_a_callable_refuses_a_name_of_something_else(key, override):
    with pytest.raises(ConfigError, match=f"^{key}: math:pi is a float, not a callable$"):
        resolve(override)


def one_weight(n):
    return ops.ones((1,))


def failing_weights(n):
    raise RuntimeError("no weights today")


@pytest.mark.parametrize("weights, message", [
    (one_weight, "gave 1 weights for n = 3 steps; it must give one per step"),
    (failing_weights, "failed for n = 3 steps (no weights today)"),
])
def test_unroll_weights_that_are_not_one_per_step_are_refused_by_the_config(weights, message):
    with pytest.raises(ConfigError, match="^" + re.escape(f"training/unroll_weights: {message}")):
        resolve({"training": {"unroll_weights": weights}})

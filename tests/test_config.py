"""Config resolution: defaults, overrides, and errors that name the key (quoting the value
shortened); YAML files whose aliases expand too far."""

import os
import shutil

import numpy as np
import pytest

from l2o.config import MAX_EXPANDED_VALUES, ConfigError, load_file, parse_override, resolve


def test_defaults_resolve_with_dependent_sections():
    config = resolve({})
    assert config["network"]["layers"] == [20, 20]
    assert config["network"]["preprocess_p"] == 10.0
    assert config["strategy"]["num_periods"] >= 1
    assert config["problems"][0]["kwargs"]["dataset"] == "digits"


def test_overrides_parse_yaml_values_and_reach_into_lists():
    config = resolve({}, ["strategy/epochs_per_period=5", "problems/0/kwargs/batch_size=32",
                          "network/layers=[10, 10]", "loss_args/epsilon=1e-8",
                          "training/jit_compile=false", "strategy/unroll_distribution=0.05"])
    assert config["strategy"]["epochs_per_period"] == 5
    assert config["problems"][0]["kwargs"]["batch_size"] == 32
    assert config["network"]["layers"] == [10, 10]
    assert config["loss_args"]["epsilon"] == 1e-8
    assert config["training"]["jit_compile"] is False
    assert config["strategy"]["unroll_distribution"] == 0.05


def test_int_accepted_where_float_expected():
    assert resolve({}, ["network/output_scale=1"])["network"]["output_scale"] == 1.0


@pytest.mark.parametrize("override, message", [
    ("strategy/epochs_per_perod=5", ("strategy/epochs_per_perod: unknown key; did you mean "
                                     "'epochs_per_period'")),
    ("trainng/depth=3", "trainng: unknown key; did you mean 'training'"),
    ("problems/0/kwargs/batch_szie=3", ("problems/0/kwargs/batch_szie: unknown key; did you "
                                        "mean 'batch_size'")),
    ("training/depth=abc", "training/depth: expected int, got str"),
    ("training/persistent=3", "training/persistent: expected bool"),
    ("training/depth=-1", "training/depth: must be at least 0"),
    ("strategy/num_periods=0", "strategy/num_periods: must be at least 1"),
    ("strategy/unroll_distribution=1.5", "strategy/unroll_distribution: an int >= 2"),
    ("training/unroll_weights=median", "training/unroll_weights: unknown value 'median'"),
    ("constructor=DN", "constructor: unknown value 'DN'; choose from ControlledAdam, DM"),
    ("constructor=DMM", "constructor: unknown value 'DMM'; did you mean 'DM'"),
    ("problems/0/target=mlp", "problems/0/target: unknown value 'mlp'"),
    ("problems/3/kwargs/batch_size=3", "problems/3: no such list entry"),
    ("problems/0/kwargs/layers=[a]", "problems/0/kwargs/layers: must be a non-empty list"),
    ("problems/0/kwargs/activation=foo", "problems/0/kwargs/activation: unknown activation"),
    ("problems/0/kwargs/validation_split=1.5", "problems/0/kwargs/validation_split: must be"),
    ("network/kernel_initializer=nope", "network/kernel_initializer: unknown initializer"),
    ("evaluation/baseline/learning_rates=[1e-3, x]",
     "evaluation/baseline/learning_rates/1: must be a positive number, got 'x'"),
    ("directory=", "directory: must be a non-empty path"),
    ("constructor=[1]", "constructor: unknown value"),
    ("network/layers=[0]", "network/layers: must be a non-empty list of positive ints"),
    ("network/preprocess_p=100", "network/preprocess_p: must be above 0.0 and at most 80.0"),
    ("optimizer/class_name=Adamm", "optimizer: not a usable Keras optimiser"),
    ("evaluation/baseline/config/learning_rat=0.1", "evaluation/baseline: not a usable Keras"),
    ("loss_args/epsilon=-1", "loss_args/epsilon: must be finite and non-negative"),
    ("no_equals_sign", "is not of the form section/key=value"),
    ("estimator_constructor=pse", "estimator_constructor: unknown value 'pse'; did you mean 'pes'"),
    ("estimator/horizon=7",
     "estimator/horizon: unknown key; estimator_constructor tbptt takes no options"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as raised:
        resolve({}, [override])
    assert message in str(raised.value)


def test_unknown_key_in_file_section():
    with pytest.raises(ConfigError, match="loss_args/scale: unknown key; valid keys: epsilon"):
        resolve({"loss_args": {"scale": True}})


def test_parse_override_keeps_strings():
    assert parse_override("directory=runs/x") == (["directory"], "runs/x")
    assert parse_override("problems/0/kwargs/layers=[20, 20]") == (
        ["problems", 0, "kwargs", "layers"], [20, 20])


def test_yaml_files_read_exponent_floats(tmp_path):
    from l2o.config import load_file

    path = tmp_path / "c.yaml"
    path.write_text("optimizer: {class_name: Adam, config: {learning_rate: 1e-3}}\n"
                    "loss_args: {epsilon: 1e-10}\n")
    config = resolve(load_file(str(path)), ["evaluation/baseline/learning_rates=[1e-3, 1]"])
    assert config["optimizer"]["config"]["learning_rate"] == 0.001
    assert config["loss_args"]["epsilon"] == 1e-10
    assert config["evaluation"]["baseline"]["learning_rates"] == [0.001, 1.0]


def test_problem_args_bind_by_position():
    config = resolve({"problems": [{"target": "quadratic", "args": [7]}]})
    assert config["problems"][0] == {"target": "quadratic", "args": [], "kwargs": {
        "dim": 7, "condition_number": None, "loss_scale": 1.0}}
    with pytest.raises(ConfigError, match="problems/0/args: quadratic takes at most 3"):
        resolve({"problems": [{"target": "quadratic", "args": [7, None, 1.0, 8]}]})


def test_scale_learning_rate_bounds():
    with pytest.raises(ConfigError, match="network/init_lr: above network/max_lr"):
        resolve({"constructor": "ScaleHierarchical"}, ["network/init_lr=[0.001, 1.0]"])
    with pytest.raises(ConfigError, match="network/init_lr: must be \\[low, high\\]"):
        resolve({"constructor": "ScaleBasic"}, ["network/init_lr=[0.01, 0.001]"])


@pytest.mark.parametrize("overrides, message", [
    (["estimator/n_particles=5"], "estimator/n_particles: must be even"),
    (["estimator/sigma=0"], "estimator/sigma: must be above 0.0"),
    (["estimator/horizon=-3"], "estimator/horizon: must be null or a positive int"),
    (["estimator/stagger=breakstep"], "estimator/stagger: breakstep staggers PES restarts"),
    (["estimator/stagger=sideways"], "estimator/stagger: unknown value 'sideways'"),
    (["estimator_constructor=es", "estimator/horizon=5", "estimator/stagger=breakstep"],
     "estimator/stagger: breakstep staggers PES restarts at the horizon; it needs estimator_"),
])
def test_bad_estimator_options_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve({}, ["estimator_constructor=pes", *overrides])


@pytest.mark.parametrize("constructor, override, message", [
    ("ControlledAdam", "network/decay_time=abc", "network/decay_time: expected a number, got str"),
    ("ControlledAdam", "network/decay_time=true", "network/decay_time: expected a number, got bool"),
    ("NormalizedMLP", "network/max_step_ratio=[2]",
     "network/max_step_ratio: expected a number, got list"),
])
def test_an_optional_number_that_is_no_number_is_refused_naming_the_key(constructor, override,
                                                                        message):
    """Keys whose default is None have no type to check against; their range check refuses a
    value that is no number instead of comparing it."""
    with pytest.raises(ConfigError, match=message):
        resolve({}, [f"constructor={constructor}", override])


def test_the_estimator_section_takes_the_chosen_estimators_defaults():
    assert resolve({})["estimator"] == {}
    assert resolve({}, ["estimator_constructor=es"])["estimator"] == {
        "sigma": 0.01, "n_particles": 8, "horizon": None, "stagger": "lockstep"}
    assert resolve({}, ["estimator_constructor=pes"])["estimator"] == {
        "sigma": 0.01, "n_particles": 8, "horizon": None, "stagger": "lockstep"}


def test_old_flat_estimator_keys_map_to_the_estimator_section():
    """Configs and run directories written before the estimator section kept it in
    training/estimator and flat training keys, with every option whatever the estimator;
    they resolve to the same run, in a file and as overrides alike."""
    old = {"training": {"estimator": "pes", "sigma": 0.1, "n_particles": 4, "horizon": 50,
                        "stagger": "breakstep"}}
    resolved = resolve(old)
    assert resolved["estimator_constructor"] == "pes"
    assert resolved["estimator"] == {"sigma": 0.1, "n_particles": 4, "horizon": 50,
                                     "stagger": "breakstep"}
    assert not {"estimator", "sigma", "n_particles", "horizon", "stagger"} & set(
        resolved["training"])
    assert resolve({}, ["training/estimator=pes", "training/sigma=0.1", "training/n_particles=4",
                        "training/horizon=50", "training/stagger=breakstep"]) == resolved
    assert old["training"]["estimator"] == "pes"  # the caller's mapping stays as given
    # What an old tbptt run recorded (the particle options at their defaults) meant nothing.
    tbptt = resolve({"training": {"estimator": "tbptt", "sigma": 0.01, "n_particles": 8,
                                  "horizon": None, "stagger": "lockstep"}})
    assert tbptt["estimator_constructor"] == "tbptt" and tbptt["estimator"] == {}
    with pytest.raises(ConfigError, match="training/estimator: the old place of "
                                          "estimator_constructor"):
        resolve({"estimator_constructor": "es", "training": {"estimator": "pes"}})
    with pytest.raises(ConfigError, match="training/sigma: the old place of estimator/sigma"):
        resolve({"estimator": {"sigma": 0.1}, "training": {"sigma": 0.2}})


def test_es_estimators_refuse_settings_they_cannot_honour():
    with pytest.raises(ConfigError, match="training/repeat: must be 1"):
        resolve({}, ["training/estimator=pes", "training/repeat=2"])


def test_es_estimators_take_random_parameter_scaling():
    resolved = resolve({}, ["training/estimator=pes", "training/parameter_scale_spread=0.5"])
    assert resolved["training"]["parameter_scale_spread"] == 0.5


@pytest.mark.parametrize("override, message", [
    ("training/epochs=3", "training/epochs: PIO does not use it"),
    ("estimator_constructor=pes", "estimator_constructor: PIO trains its drift network"),
    ("network/dt=0.3", "network/dt: dt = 0.3 must divide t_end"),
    ("network/drift_format=h", "network/drift_format: unknown value"),
])
def test_pio_configs_refuse_what_pio_would_ignore_or_get_wrong(override, message):
    base = {"constructor": "PIO", "problems": [{"target": "carrillo"}]}
    with pytest.raises(ConfigError, match=message):
        resolve(base, [override])


def test_two_moons_resolves_and_builds_from_a_config():
    from l2o import problems

    config = resolve({"constructor": "PIO", "problems": [{"target": "two_moons"}]})
    assert "dataset" not in config["problems"][0]["kwargs"]
    problem = problems.build(config["problems"][0])
    assert [p.shape for p in problem.init(0)] == [(2, 10), (10,), (10, 1), (1,)]


def test_es_estimators_refuse_a_divergence_cut_off():
    with pytest.raises(ConfigError, match="loss_args/obj_train_max_multiplier"):
        resolve({}, ["training/estimator=pes", "loss_args/obj_train_max_multiplier=2.0"])


def laughs(levels, flow=False):
    """A "billion laughs": ``levels`` lists, each of 9 aliases of the one before."""
    names = [f"l{level}" for level in range(levels)]
    values = ["[" + ", ".join(["lol"] * 9) + "]"] + [
        "[" + ", ".join([f"*{names[level - 1]}"] * 9) + "]" for level in range(1, levels)]
    if flow:
        return "[" + ", ".join(f"&{name} {value}" for name, value in zip(names, values)) + "]"
    return "".join(f"{name}: &{name} {value}\n" for name, value in zip(names, values))


def test_yaml_aliases_that_expand_too_far_are_refused_before_any_expansion(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9))  # 9^9 values once expanded
    with pytest.raises(ConfigError) as raised:
        load_file(str(path))
    assert str(raised.value) == (f"{path}: not valid YAML: its aliases (*name) expand to more "
                                 f"than {MAX_EXPANDED_VALUES} values; write the values out, or "
                                 f"alias fewer of them")
    path.write_text("network: &network {layers: [4]}\ntoolkit_only: {a: &a [*network, 1]}\n"
                    "problems: [{target: quadratic, kwargs: {dim: 3}}]\n"
                    "strategy: {num_periods: 1}\n")
    assert load_file(str(path))["toolkit_only"]["a"] == [{"layers": [4]}, 1]  # a few: fine
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="an alias .* stands inside its own anchor"):
        load_file(str(path))


def test_overrides_whose_aliases_expand_too_far_are_refused():
    with pytest.raises(ConfigError, match="^network/layers: its aliases"):
        parse_override("network/layers=" + laughs(9, flow=True))


def test_error_messages_quote_a_huge_value_shortened():
    with pytest.raises(ConfigError) as raised:
        resolve({"network": {"layers": ["lol"] * 59049}})
    message = str(raised.value)
    assert message.startswith("network/layers: must be a non-empty list of positive ints, got "
                              "['lol', 'lol', ")
    assert message.endswith("...") and len(message) < 160
    with pytest.raises(ConfigError, match=r"^training/depth: expected int, got str 'x{76}\.\.\.$"):
        resolve({}, ["training/depth=" + "x" * 10000])


@pytest.mark.parametrize("key", ["network/output_scale", "network/preprocess_p",
                                 "estimator/sigma"])
def test_infinite_values_do_not_pass_a_range_check(key):
    with pytest.raises(ConfigError, match=f"^{key}: must be (finite|above 0.0 and at most "
                                          f"80.0), got inf$"):
        resolve({}, ["estimator_constructor=pes", f"{key}=.inf"])


def test_the_light_loader_knows_every_section():
    from l2o import config_files
    from l2o.config import DEFAULTS

    assert config_files.SECTIONS == tuple(DEFAULTS)


@pytest.mark.slow
def test_a_run_directory_written_before_the_estimator_section_resumes_as_an_uninterrupted_run(
        tmp_path):
    """``tests/fixtures/run_pes_cf94e69``: one period of PES on a quadratic, written when the
    estimator was ``training/estimator`` with flat option keys. Resumed for a second period, it
    ends where the same run in today's form, trained for two periods straight, ends."""
    import l2o
    from l2o import runs

    old = tmp_path / "old"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "run_pes_cf94e69"), old)
    assert runs.read_config(old)["training"]["estimator"] == "pes"
    l2o.resume(str(old), ["strategy/num_periods=2"])
    l2o.train({
        "constructor": "DM", "network": {"layers": [4]},
        "problems": [{"target": "quadratic", "kwargs": {"dim": 3}}],
        "training": {"depth": 2, "persistent": True},
        "estimator_constructor": "pes",
        "estimator": {"n_particles": 2, "sigma": 0.1, "horizon": 10, "stagger": "lockstep"},
        "strategy": {"num_periods": 2, "epochs_per_period": 2, "unroll_distribution": 5,
                     "validation_unroll": 5, "validation_repeat": 1},
        "evaluation": {"steps": 5, "repeats": 1, "validation_every": 5},
        "directory": str(tmp_path / "straight")})
    resumed, _ = runs.load_meta_weights(old, "last")
    straight, _ = runs.load_meta_weights(tmp_path / "straight", "last")
    assert resumed.keys() == straight.keys()
    for name in straight:
        np.testing.assert_allclose(resumed[name], straight[name], rtol=1e-5, atol=1e-7)
    # Today's first period is the one the earlier version wrote, and the second moved on.
    first, _ = runs.load_meta_weights(old, "period_0000")
    straight_first, _ = runs.load_meta_weights(tmp_path / "straight", "period_0000")
    for name in straight:
        np.testing.assert_allclose(first[name], straight_first[name], rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(first[name], straight[name]) for name in straight)
    assert isinstance(l2o.load_optimizer(str(old)), l2o.optimizers.DMOptimizer)

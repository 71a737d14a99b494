"""Config resolution: defaults, overrides, and errors that name the key (quoting the value
shortened); YAML files whose aliases expand too far."""

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
    ("constructor=DN", "constructor: unknown value 'DN'; choose from DM"),
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
    ("training/estimator=pse", "training/estimator: unknown value 'pse'; did you mean 'pes'"),
    ("training/n_particles=5", "training/n_particles: must be even"),
    ("training/sigma=0", "training/sigma: must be above 0.0"),
    ("training/horizon=-3", "training/horizon: must be null or a positive int"),
    ("training/stagger=breakstep", "training/stagger: breakstep staggers PES restarts"),
    ("training/horizon=7", "training/horizon: only ES and PES particles restart"),
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


def test_es_estimators_refuse_settings_they_cannot_honour():
    with pytest.raises(ConfigError, match="training/repeat: must be 1"):
        resolve({}, ["training/estimator=pes", "training/repeat=2"])


def test_es_estimators_take_random_parameter_scaling():
    resolved = resolve({}, ["training/estimator=pes", "training/parameter_scale_spread=0.5"])
    assert resolved["training"]["parameter_scale_spread"] == 0.5


@pytest.mark.parametrize("override, message", [
    ("training/epochs=3", "training/epochs: PIO does not use it"),
    ("training/estimator=pes", "training/estimator: PIO does not use it"),
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
                                 "training/sigma"])
def test_infinite_values_do_not_pass_a_range_check(key):
    with pytest.raises(ConfigError, match=f"^{key}: must be (finite|above 0.0 and at most "
                                          f"80.0), got inf$"):
        resolve({}, [f"{key}=.inf"])


def test_the_light_loader_knows_every_section():
    from l2o import config_files
    from l2o.config import DEFAULTS

    assert config_files.SECTIONS == tuple(DEFAULTS)

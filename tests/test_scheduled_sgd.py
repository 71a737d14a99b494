"""ScheduledSGD: the schedules and the momentum step against hand-computed values."""

import numpy as np
import pytest
from keras import ops

from l2o.config import ConfigError, resolve
from l2o.optimizers.scheduled_sgd import ScheduledSGDRule, tensor_groups


def rates_at(rule, step):
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    return ops.convert_to_numpy(rule.learning_rates(meta, ops.convert_to_tensor(float(step))))


def test_inverse_time_decay():
    rule = ScheduledSGDRule("inverse_time_decay", learning_rate=0.3, power=0.7)
    for step in (0, 5000, 15000):
        np.testing.assert_allclose(rates_at(rule, step), 0.3 / (1 + step / 5000) ** 0.7,
                                   rtol=1e-6)


def test_log_power_is_the_meta_weight_and_gives_the_same_schedule():
    rule = ScheduledSGDRule("inverse_time_decay", learning_rate=0.3, power=0.7,
                            learn_log_power=True)
    weights = rule.init_meta_weights(0)
    assert set(weights) == {"log_learning_rate", "log_power"}
    np.testing.assert_allclose(weights["log_power"], np.log(0.7), rtol=1e-6)
    for step in (0, 5000, 15000):
        np.testing.assert_allclose(rates_at(rule, step), 0.3 / (1 + step / 5000) ** 0.7,
                                   rtol=1e-6)
    meta = {"log_learning_rate": ops.convert_to_tensor(np.log([0.3]).astype(np.float32)),
            "log_power": ops.convert_to_tensor(np.log([2.0]).astype(np.float32))}
    rate = rule.learning_rates(meta, ops.convert_to_tensor(5000.0))
    np.testing.assert_allclose(ops.convert_to_numpy(rate), 0.3 / 2.0 ** 2.0, rtol=1e-6)


def test_log_power_needs_a_positive_power():
    config = {"constructor": "ScheduledSGD", "network": {"power": 0.0, "learn_log_power": True}}
    with pytest.raises(ConfigError, match="network/power"):
        resolve(config)


def test_log_linear_interpolates_in_log_space_then_holds():
    rule = ScheduledSGDRule("log_linear", learning_rate=1.0, final_learning_rate=0.01,
                            horizon=100)
    np.testing.assert_allclose(rates_at(rule, 0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rates_at(rule, 50), 0.1, rtol=1e-5)  # geometric midpoint
    np.testing.assert_allclose(rates_at(rule, 100), 0.01, rtol=1e-5)
    np.testing.assert_allclose(rates_at(rule, 400), 0.01, rtol=1e-5)


def test_per_group_momentum_step_by_hand():
    rule = ScheduledSGDRule("constant", learning_rate=0.1, momentum=0.5, learn_momentum=True,
                            groups=2)
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    meta["log_learning_rate"] = ops.convert_to_tensor(np.log([0.1, 0.2]).astype(np.float32))
    params = [ops.ones((2,)), ops.ones((3,)), ops.ones((1,))]  # groups: (0, 1), (2,)
    grads = [ops.ones((2,)), 2 * ops.ones((3,)), 4 * ops.ones((1,))]
    state = rule.init_state(params, 0)
    updates, state = rule.update(meta, grads, params, state)
    updates, state = rule.update(meta, grads, params, state)
    # v_2 = 0.5 g + g = 1.5 g; update = -lr v_2.
    for update, expected in zip(updates, [-0.1 * 1.5, -0.1 * 3.0, -0.2 * 6.0]):
        np.testing.assert_allclose(ops.convert_to_numpy(update), expected, rtol=1e-6)
    assert float(state["step"]) == 2.0


def test_groups_split_tensors_consecutively():
    assert tensor_groups(4, 2) == [0, 0, 1, 1]
    assert tensor_groups(5, 2) == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="network/groups"):
        tensor_groups(2, 3)


@pytest.mark.parametrize("override, message", [
    ("network/schedule=cosine", "network/schedule"),
    ("network/momentum=1.0", "network/momentum"),
    ("network/learning_rate=0", "network/learning_rate"),
])
def test_bad_network_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"constructor": "ScheduledSGD"}, [override])


def test_fixed_momentum_in_float64():
    rule = ScheduledSGDRule("constant", learning_rate=0.5, momentum=0.9, groups=1)
    meta = {k: ops.convert_to_tensor(v.astype(np.float64)) for k, v in
            rule.init_meta_weights(0).items()}
    params = [ops.ones((3,), "float64")]
    state = rule.init_state(params, 0)
    grads = [ops.ones((3,), "float64")]
    for _ in range(2):
        updates, state = rule.update(meta, grads, params, state)
    # rtol: the initial log-rate is rounded to float32 before the cast.
    np.testing.assert_allclose(ops.convert_to_numpy(updates[0]), -0.5 * 1.9, rtol=1e-7)

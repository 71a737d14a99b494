"""ScheduledSGD's discrete per-group update switches against hand-computed values."""

import numpy as np
import pytest
from keras import ops

from l2o.config import ConfigError, resolve
from l2o.optimizers.scheduled_sgd import ScheduledSGDRule


def masked_rule(logits):
    rule = ScheduledSGDRule("constant", learning_rate=0.1, momentum=0.5, learn_momentum=True,
                            groups=2, learn_update_mask=True)
    meta = {k: ops.convert_to_tensor(v) for k, v in rule.init_meta_weights(0).items()}
    meta["update_mask_logit"] = ops.convert_to_tensor(np.float32(logits))
    return rule, meta


def two_steps(rule, meta):
    params = [ops.ones((2,)), ops.ones((3,)), ops.ones((1,))]  # groups: (0, 1), (2,)
    grads = [ops.ones((2,)), 2 * ops.ones((3,)), 4 * ops.ones((1,))]
    state = rule.init_state(params, 0)
    for _ in range(2):
        updates, state = rule.update(meta, grads, params, state)
    return [ops.convert_to_numpy(u) for u in updates], state


@pytest.mark.parametrize("logits, switches", [([0.3, -0.2], [1, 0]), ([-1e-3, 2.0], [0, 1]),
                                              ([0.0, 5.0], [0, 1])])
def test_switch_is_the_sign_of_its_meta_weight(logits, switches):
    rule, meta = masked_rule(logits)
    updates, state = two_steps(rule, meta)
    # v_2 = 0.5 g + g = 1.5 g; update = -u_k lr v_2 (u_k = 1[c_k > 0]).
    unmasked = [-0.1 * 1.5, -0.1 * 3.0, -0.1 * 6.0]
    for update, expected, group in zip(updates, unmasked, [0, 0, 1]):
        np.testing.assert_allclose(update, switches[group] * expected, rtol=1e-6)
    # A frozen group's velocity still accumulates: v_2 = 1.5 g.
    np.testing.assert_allclose(ops.convert_to_numpy(state["velocity"][2]), 6.0, rtol=1e-6)


def test_off_by_default_adds_no_meta_weight():
    assert "update_mask_logit" not in ScheduledSGDRule("constant").init_meta_weights(0)
    weights = ScheduledSGDRule("constant", groups=3, learn_update_mask=True,
                               update_mask_logit=0.5).init_meta_weights(0)
    np.testing.assert_array_equal(weights["update_mask_logit"], [0.5, 0.5, 0.5])


def test_tbptt_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="network/learn_update_mask.*es or pes"):
        resolve({"constructor": "ScheduledSGD"}, ["network/learn_update_mask=true"])
    for estimator in ("es", "pes"):
        config = resolve({"constructor": "ScheduledSGD"}, ["network/learn_update_mask=true",
                                                           f"estimator_constructor={estimator}"])
        assert config["network"]["learn_update_mask"]


def test_non_finite_initial_logit_is_named():
    with pytest.raises(ConfigError, match="network/update_mask_logit"):
        resolve({"constructor": "ScheduledSGD"}, ["network/update_mask_logit=.nan"])

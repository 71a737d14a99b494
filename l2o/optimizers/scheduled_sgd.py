"""ScheduledSGD: SGD (with momentum) whose learning-rate schedule is meta-learned.

Hyperparameter meta-learning is meta-training a learned optimiser with a
handful of meta-weights. The parameter tensors are split into ``groups``
consecutive groups of (nearly) equal count (``groups`` = 1: one shared rate;
for an MLP with two tensors per layer, ``groups`` = number of layers gives
per-layer rates); group k owns meta-weights a_k, and, by schedule, p_k or b_k,
and m_k. At inner step t = 0, 1, ...:

    constant             lr_t = exp(a_k)
    inverse_time_decay   lr_t = exp(a_k) / (1 + t / decay_steps)^p_k
                         (theta_0 = exp(a_k), theta_1 = p_k; decay_steps 5000;
                         ``learn_log_power``: p_k = exp(q_k), q_k the meta-weight,
                         as the PES paper learns it, so that a meta-step scales p)
    log_linear           log lr_t = (1 - u) a_k + u b_k,  u = min(t / horizon, 1)
                         (a straight line in log space from exp(a_k) to exp(b_k))

With momentum (``momentum`` > 0 or ``learn_momentum``), heavy-ball:

    v_t = beta_k v_{t-1} + g_t,   update_t = -lr_t v_t,
    beta_k = ``momentum``, or sigmoid(m_k) when ``learn_momentum``;

without it, update_t = -lr_t g_t. Rates are learnt in log space so that they
stay positive and a meta-gradient step moves them by a factor, not an amount.

Discrete per-group switches (``learn_update_mask``): group k also owns a
meta-weight c_k, and its update is gated by the binary u_k = 1[c_k > 0]:

    update_t = -u_k lr_t v_t      (or -u_k lr_t g_t without momentum),

so a group with c_k <= 0 is frozen at its initial values (its velocity still
accumulates, unused). This is the toolkit's own definition of the PES paper's
``--tune_params=mask:fixed`` (whose exact meaning is not documented here): one
on/off switch per group, "is this layer trained?". u_k is a step function of
c_k, with zero gradient almost everywhere, so only the estimators that score
perturbed values (``estimator_constructor`` es and pes, which follow the gradient
of the Gaussian-smoothed objective) can learn it; TBPTT is refused.
``update_mask_logit`` is c_k's initial value (positive: every group trained).
"""

import keras
import numpy as np
from keras import ops

from l2o.optimizers.base import LearnedOptimizer, UpdateRule
from l2o.registry import ESTIMATORS, OPTIMIZERS
from l2o.validation import ConfigError, check_choice, check_fraction, check_range

SCHEDULES = ("constant", "inverse_time_decay", "log_linear")


def tensor_groups(count, groups):
    """The group of each of ``count`` parameter tensors: ``groups`` consecutive runs."""
    if groups > count:
        raise ValueError(f"network/groups: {groups} groups but only {count} parameter tensors")
    return [int(group) for group, run in enumerate(np.array_split(np.arange(count), groups))
            for _ in run]


class ScheduledSGDRule(UpdateRule):
    """The pure ScheduledSGD update; see the module docstring for the equations.

    ``learning_rate``, ``power``, ``final_learning_rate`` and ``momentum`` are
    the meta-weights' initial values.
    """

    def __init__(self, schedule="inverse_time_decay", learning_rate=0.1, power=1.0,
                 decay_steps=5000.0, final_learning_rate=0.01, horizon=1000, momentum=0.0,
                 learn_momentum=False, groups=1, learn_update_mask=False,
                 update_mask_logit=1.0, learn_log_power=False):
        self.schedule = schedule
        self.learning_rate, self.power = float(learning_rate), float(power)
        self.decay_steps, self.final_learning_rate = float(decay_steps), float(final_learning_rate)
        self.horizon, self.momentum = int(horizon), float(momentum)
        self.learn_momentum, self.groups = bool(learn_momentum), int(groups)
        self.learn_update_mask = bool(learn_update_mask)
        self.update_mask_logit = float(update_mask_logit)
        self.learn_log_power = bool(learn_log_power)

    @classmethod
    def validate_config(cls, network):
        check_choice("network/schedule", network["schedule"], SCHEDULES)
        if not np.isfinite(network["update_mask_logit"]):
            raise ConfigError(f"network/update_mask_logit: must be finite, got "
                              f"{network['update_mask_logit']!r}")
        for key in ("learning_rate", "final_learning_rate", "decay_steps"):
            check_range(f"network/{key}", network[key], 0.0)
        check_range("network/horizon", network["horizon"], 0)
        if network["learn_log_power"]:
            check_range("network/power", network["power"], 0.0)
        check_range("network/groups", network["groups"], 0)
        if network["learn_momentum"]:
            # A learnt momentum is sigmoid(m): its initial value must have a finite logit.
            check_fraction("network/momentum", network["momentum"])
        elif not 0.0 <= network["momentum"] < 1.0:
            raise ConfigError(f"network/momentum: must be in [0, 1), got {network['momentum']!r}")

    @property
    def uses_momentum(self):
        return self.learn_momentum or self.momentum > 0

    def init_meta_weights(self, seed):
        def filled(value):
            return np.full((self.groups,), value, np.float32)

        weights = {"log_learning_rate": filled(np.log(self.learning_rate))}
        if self.schedule == "inverse_time_decay":
            if self.learn_log_power:
                weights["log_power"] = filled(np.log(self.power))
            else:
                weights["power"] = filled(self.power)
        if self.schedule == "log_linear":
            weights["log_final_learning_rate"] = filled(np.log(self.final_learning_rate))
        if self.learn_momentum:
            weights["momentum_logit"] = filled(np.log(self.momentum / (1.0 - self.momentum)))
        if self.learn_update_mask:
            weights["update_mask_logit"] = filled(self.update_mask_logit)
        return weights

    def init_state(self, params, seed):
        tensor_groups(len(params), self.groups)
        state = {"step": ops.zeros((), params[0].dtype)}
        if self.uses_momentum:
            state["velocity"] = [ops.zeros_like(p) for p in params]
        return state

    def learning_rates(self, meta_weights, step):
        """lr_t of every group at inner step ``step``, shape [groups]."""
        log_rate = meta_weights["log_learning_rate"]
        if self.schedule == "inverse_time_decay":
            power = ops.exp(meta_weights["log_power"]) if self.learn_log_power \
                else meta_weights["power"]
            return ops.exp(log_rate) / ops.power(1.0 + step / self.decay_steps, power)
        if self.schedule == "log_linear":
            progress = ops.minimum(step / float(self.horizon), 1.0)
            log_rate = (1.0 - progress) * log_rate + progress * meta_weights[
                "log_final_learning_rate"]
        return ops.exp(log_rate)

    def update(self, meta_weights, grads, params, state):
        groups = tensor_groups(len(params), self.groups)
        rates = self.learning_rates(meta_weights, state["step"])
        if self.learn_update_mask:  # u_k lr_t: a frozen group's rate is zero
            rates = rates * ops.cast(meta_weights["update_mask_logit"] > 0, rates.dtype)
        directions = grads
        new_state = {"step": state["step"] + 1.0}
        if self.uses_momentum:
            betas = ops.sigmoid(meta_weights["momentum_logit"]) if self.learn_momentum \
                else ops.full((self.groups,), self.momentum, grads[0].dtype)
            directions = [ops.cast(betas[k], g.dtype) * v + g
                          for k, v, g in zip(groups, state["velocity"], grads)]
            new_state["velocity"] = directions
        return [-ops.cast(rates[k], d.dtype) * d for k, d in zip(groups, directions)], new_state


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("ScheduledSGD")
class ScheduledSGD(LearnedOptimizer):
    """Keras optimiser applying a meta-learned SGD schedule; see ``l2o.optimizers.scheduled_sgd``."""

    rule_class = ScheduledSGDRule

    @classmethod
    def validate_run_config(cls, config):
        """The update switches are step functions of their meta-weights: nothing for TBPTT's
        backpropagated gradient to follow."""
        if config["network"]["learn_update_mask"] and \
                ESTIMATORS[config["estimator_constructor"]].differentiates:
            raise ConfigError(f"network/learn_update_mask: the per-group update switches "
                              f"u_k = 1[c_k > 0] have no gradient for estimator_constructor "
                              f"{config['estimator_constructor']} to backpropagate; use one "
                              f"that does not differentiate (es or pes)")

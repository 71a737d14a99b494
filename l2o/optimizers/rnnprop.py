"""RNNProp: Lv, Jiang and Li (2017), "Learning Gradient Descent: Better
Generalization and Longer Horizons", ICML 2017.

A coordinatewise LSTM, like DM, but fed Adam's normalised quantities so that
its inputs do not depend on the scale of the gradients:

    m_t = beta_1 m_{t-1} + (1 - beta_1) g_t        m_hat = m_t / (1 - beta_1^t)
    v_t = beta_2 v_{t-1} + (1 - beta_2) g_t^2      v_hat = v_t / (1 - beta_2^t)
    x_t = ( m_hat / (sqrt(v_hat) + epsilon),  g_t / (sqrt(v_hat) + epsilon) )
    h_t = LSTM stack(x_t, h_{t-1})                 (``layers`` = [20, 20])
    update_t = alpha * tanh(W h_t + b)             (``alpha`` = 0.1)

The tanh bounds every step by ``alpha``, which is what keeps RNNProp stable
over horizons far longer than it was trained on. The paper's random-scaling
trick is a training option: ``training/parameter_scale_spread``.
"""

import keras
from keras import ops

from l2o.numerics import safe_sqrt
from l2o.optimizers.base import LearnedOptimizer
from l2o.optimizers.coordinatewise import CoordinatewiseLSTM
from l2o.registry import OPTIMIZERS
from l2o.tree import flatten_all, unflatten_like
from l2o.validation import check_fraction, check_range


class RNNPropRule(CoordinatewiseLSTM):
    """The pure RNNProp update; see the module docstring. ``**cell``: LSTM options."""

    input_features = 2

    def __init__(self, beta_1=0.9, beta_2=0.9, epsilon=1e-10, alpha=0.1, **cell):
        super().__init__(**cell)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon, self.alpha = float(epsilon), float(alpha)

    @classmethod
    def validate_config(cls, network):
        super().validate_config(network)
        for key in ("beta_1", "beta_2"):
            check_fraction(f"network/{key}", network[key])
        check_range("network/epsilon", network["epsilon"], 0.0)
        check_range("network/alpha", network["alpha"], 0.0)

    def init_state(self, params, seed):
        coordinates = ops.shape(flatten_all(params))[0]
        dtype = params[0].dtype
        return {"lstm": self.init_lstm_state(params), "step": ops.zeros((), dtype),
                "m": ops.zeros((coordinates,), dtype), "v": ops.zeros((coordinates,), dtype)}

    def update(self, meta_weights, grads, params, state):
        g = flatten_all(grads)
        step = state["step"] + 1.0
        m = self.beta_1 * state["m"] + (1.0 - self.beta_1) * g
        v = self.beta_2 * state["v"] + (1.0 - self.beta_2) * ops.square(g)
        m_hat = m / (1.0 - ops.power(self.beta_1, step))
        scale = safe_sqrt(v / (1.0 - ops.power(self.beta_2, step))) + self.epsilon
        features = ops.stack([m_hat / scale, g / scale], axis=-1)
        outputs, lstm_state = self.lstm_stack(meta_weights, features, state["lstm"])
        updates = self.alpha * ops.tanh(outputs[:, 0])
        return unflatten_like(updates, params), {"lstm": lstm_state, "step": step, "m": m,
                                                 "v": v}


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("RNNProp")
class RNNPropOptimizer(LearnedOptimizer):
    """Keras optimiser applying a (meta-trained) RNNProp network; see ``l2o.optimizers.rnnprop``."""

    rule_class = RNNPropRule

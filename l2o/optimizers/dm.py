"""DM: the coordinatewise LSTM optimiser of Andrychowicz et al. (2016).

"Learning to learn by gradient descent by gradient descent", NeurIPS 2016.
Every coordinate of every parameter is an independent sequence through the
same small network, with its own recurrent state:

    x_t      = preprocess(g_t)                                 (2 features)
    h_t^1    = LSTM_1(x_t, h_{t-1}^1)
    h_t^2    = LSTM_2(h_t^1, h_{t-1}^2)          (``layers`` = [20, 20])
    update_t = output_scale * (W h_t^L + b)
    theta_{t+1} = theta_t + update_t

Gradient preprocessing (appendix A), with p = ``preprocess_p`` (10):

    preprocess(g) = ( log|g| / p, sign(g) )   if |g| >= e^{-p}
                    ( -1,         e^p g   )   otherwise

which hands the network the gradient's magnitude on a log scale and its sign
separately, so coordinates whose gradients differ by orders of magnitude look
alike to it.
"""

import keras
import numpy as np
from keras import ops

from l2o.optimizers.base import LearnedOptimizer
from l2o.optimizers.coordinatewise import CoordinatewiseLSTM
from l2o.registry import OPTIMIZERS
from l2o.tree import flatten_all, unflatten_like
from l2o.validation import check_range


def log_sign_preprocess(grad, p):
    """Appendix A of Andrychowicz et al.: (log|g|/p, sign g), or (-1, e^p g) for tiny g."""
    # Python floats, not numpy scalars: Keras would promote to float64.
    threshold, amplification = float(np.exp(-p)), float(np.exp(p))
    magnitude = ops.abs(grad)
    large = magnitude >= threshold
    # The maximum keeps log() finite in the branch that ``where`` discards,
    # so that no NaN leaks into the gradient.
    log_part = ops.log(ops.maximum(magnitude, threshold)) / p
    first = ops.where(large, log_part, -ops.ones_like(grad))
    second = ops.where(large, ops.sign(grad), amplification * grad)
    return ops.stack([first, second], axis=-1)


class DMRule(CoordinatewiseLSTM):
    """The pure DM update; see the module docstring for the equations.

    ``**cell`` are the LSTM options of ``CoordinatewiseLSTM`` (``layers``,
    activations, initialisers, ``unit_forget_bias``).
    """

    input_features = 2

    def __init__(self, preprocess_p=10.0, output_scale=0.1, **cell):
        super().__init__(**cell)
        self.preprocess_p = float(preprocess_p)
        self.output_scale = float(output_scale)

    @classmethod
    def validate_config(cls, network):
        super().validate_config(network)
        # e^p must stay finite in float32.
        check_range("network/preprocess_p", network["preprocess_p"], 0.0, 80.0)
        check_range("network/output_scale", network["output_scale"], 0.0)

    def init_state(self, params, seed):
        return self.init_lstm_state(params)

    def update(self, meta_weights, grads, params, state):
        features = log_sign_preprocess(flatten_all(grads), self.preprocess_p)
        outputs, state = self.lstm_stack(meta_weights, features, state)
        return unflatten_like(self.output_scale * outputs[:, 0], params), state


@keras.saving.register_keras_serializable(package="l2o")
@OPTIMIZERS.register("DM")
class DMOptimizer(LearnedOptimizer):
    """Keras optimiser applying a (meta-trained) DM network; see ``l2o.optimizers.dm``."""

    rule_class = DMRule

"""The toy character LSTM (``l2o.systems.char_lstm``): its losses by hand, its gradient by
finite differences, and its offline corpus."""

import numpy as np
import pytest
from keras import ops

from l2o.estimators.online import OnlineTBPTT
from l2o.systems import char_lstm

HIDDEN = 3
TEXT = "the cat"


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_losses(theta, sequence, steps, hidden=HIDDEN):
    """Per-step next-character cross-entropies, written out with numpy."""
    vocabulary = len(char_lstm.ALPHABET)
    sizes = [int(np.prod(shape)) for shape in char_lstm.shapes(hidden)]
    weights, bias, weights_out, bias_out = (
        part.reshape(shape) for part, shape in
        zip(np.split(theta.astype(np.float64), np.cumsum(sizes)[:-1]), char_lstm.shapes(hidden),
            strict=True))
    h, c, losses = np.zeros(hidden), np.zeros(hidden), []
    for t in range(steps):
        gates = np.concatenate([np.eye(vocabulary)[sequence[t]], h]) @ weights + bias
        i, f, g, o = np.split(gates, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        logits = h @ weights_out + bias_out
        shifted = logits - logits.max()
        losses.append(np.log(np.exp(shifted).sum()) - shifted[sequence[t + 1]])
    return np.array(losses)


def test_per_step_losses_match_a_numpy_lstm():
    sequence = char_lstm.encode(TEXT)
    # Non-zero biases too, so that every part of theta is exercised.
    theta = np.random.default_rng(1).normal(0.0, 0.5, char_lstm.parameter_count(HIDDEN))
    system = char_lstm.system(sequence, HIDDEN)
    expected = numpy_losses(theta, sequence, len(TEXT) - 1)
    states = ops.convert_to_tensor(system.initial_state(dtype="float64")[None])
    thetas = ops.convert_to_tensor(theta[None])
    for t, loss in enumerate(expected):
        value, states = system.unroll(thetas, states, t, 1)
        assert float(value[0]) == pytest.approx(loss, rel=1e-10)
    # The whole run as one truncation, several particles with their own weights.
    others = np.stack([theta, 0.5 * theta])
    totals = ops.convert_to_numpy(system.meta_objective(ops.convert_to_tensor(others),
                                                        len(TEXT) - 1))
    assert totals == pytest.approx([expected.sum(),
                                    numpy_losses(0.5 * theta, sequence, len(TEXT) - 1).sum()])


def test_gradient_matches_finite_differences():
    system = char_lstm.system(char_lstm.encode(TEXT), HIDDEN)
    theta = char_lstm.initial_theta(HIDDEN, seed=2).astype(np.float64)
    gradient, loss = OnlineTBPTT(system).estimate(theta, None, len(TEXT) - 1)

    def total(vector):
        return float(system.meta_objective(ops.convert_to_tensor(vector[None]),
                                           len(TEXT) - 1)[0])

    assert loss == pytest.approx(total(theta), rel=1e-10)
    generator, step = np.random.default_rng(3), 1e-5
    for _ in range(3):
        direction = generator.standard_normal(theta.size)
        central = (total(theta + step * direction) - total(theta - step * direction)) / (2 * step)
        assert np.dot(gradient, direction) == pytest.approx(central, rel=1e-6, abs=1e-8)


def test_corpus_is_the_named_docstrings_in_the_alphabet():
    corpus = char_lstm.docstring_corpus()
    assert corpus == char_lstm.docstring_corpus()
    assert len(corpus) > 5000 and set(corpus) <= set(char_lstm.ALPHABET)
    assert "  " not in corpus
    assert corpus.startswith(char_lstm.docstring_corpus(char_lstm.CORPUS_MODULES[:1]))

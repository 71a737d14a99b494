"""A toy character-level LSTM as a recurrent system (the PES paper's variance measurement).

Vicol, Metz and Sohl-Dickstein (ICML 2021) measure the variance of PES on a small
LSTM reading characters: theta is all the LSTM's weights, the inner state its
hidden and cell state, carried across truncations, and each step's loss the
cross-entropy of the next character. With x_t the one-hot of character c_t
(V letters), s_t = [h_t, c_t] (H each) and theta = (W [V+H, 4H], b [4H],
W_out [H, V], b_out [V]) flattened:

    [i, f, g, o] = [x_t, h_t] W + b
    c_{t+1} = sigmoid(f) c_t + sigmoid(i) tanh(g),   h_{t+1} = sigmoid(o) tanh(c_{t+1}),
    L_{t+1} = logsumexp(h_{t+1} W_out + b_out) - (h_{t+1} W_out + b_out)[c_{t+1}],

from s_0 = 0. ``system(sequence, hidden)`` is it as a ``RecurrentSystem``
(states [P, 2H], thetas [P, m], every particle with its own weights) reading the
integer ``sequence`` (step t consumes c_t and is scored on predicting c_{t+1}, so
a run of n steps needs n + 1 characters).

The character data is offline and deterministic: ``docstring_corpus()`` is the
module docstrings (``inspect.getdoc``) of ``CORPUS_MODULES`` of Python's standard
library, lower-cased, every character outside ``ALPHABET`` (a-z and space)
turned into a space and runs of spaces squeezed to one. It depends only on the
Python version (3.11 here). The paper used a subset of Penn Treebank characters.
"""

import importlib
import inspect
import re

import numpy as np
from keras import ops

from l2o.systems.recurrent import RecurrentSystem

ALPHABET = "abcdefghijklmnopqrstuvwxyz "
VOCABULARY = len(ALPHABET)
CORPUS_MODULES = ("collections", "functools", "itertools", "json", "textwrap", "difflib",
                  "heapq", "bisect", "fractions", "statistics", "argparse", "string")


def docstring_corpus(modules=CORPUS_MODULES):
    """The module docstrings of ``modules``, joined and reduced to ``ALPHABET``."""
    text = " ".join(inspect.getdoc(importlib.import_module(name)) or "" for name in modules)
    return re.sub(" +", " ", re.sub(f"[^{ALPHABET}]", " ", text.lower())).strip()


def encode(text):
    """Characters of ``text`` (all in ``ALPHABET``) as integer indices."""
    return np.array([ALPHABET.index(character) for character in text], np.int32)


def shapes(hidden, vocabulary=VOCABULARY):
    """The shapes of (W, b, W_out, b_out), in theta's order."""
    return ((vocabulary + hidden, 4 * hidden), (4 * hidden,), (hidden, vocabulary),
            (vocabulary,))


def parameter_count(hidden, vocabulary=VOCABULARY):
    return sum(int(np.prod(shape)) for shape in shapes(hidden, vocabulary))


def initial_theta(hidden, seed=0, vocabulary=VOCABULARY):
    """Weights uniform in +-1/sqrt(H) (PyTorch's LSTM initialisation), biases zero."""
    generator = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(hidden)
    parts = [generator.uniform(-scale, scale, shape) if len(shape) == 2 else np.zeros(shape)
             for shape in shapes(hidden, vocabulary)]
    return np.concatenate([part.ravel() for part in parts]).astype(np.float32)


def unpack(thetas, hidden, vocabulary=VOCABULARY):
    """(W, b, W_out, b_out) of every row of ``thetas`` [P, m], each with the particle axis."""
    parts, start = [], 0
    for shape in shapes(hidden, vocabulary):
        size = int(np.prod(shape))
        parts.append(ops.reshape(thetas[:, start:start + size], (-1, *shape)))
        start += size
    return parts


def system(sequence, hidden, vocabulary=VOCABULARY):
    """The LSTM reading ``sequence`` (integers below ``vocabulary``) as a ``RecurrentSystem``."""
    characters = ops.convert_to_tensor(np.asarray(sequence, np.int32))

    def one_hot(t):
        return ops.one_hot(ops.take(characters, ops.cast(t, "int32")), vocabulary)

    def step(states, thetas, t):
        weights, bias, _, _ = unpack(thetas, hidden, vocabulary)
        h, c = states[:, :hidden], states[:, hidden:]
        inputs = ops.concatenate([ops.cast(one_hot(t), states.dtype), h], axis=1)
        gates = ops.einsum("pi,pij->pj", inputs, weights) + bias
        i, f, g, o = ops.split(gates, 4, axis=1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        return ops.concatenate([ops.sigmoid(o) * ops.tanh(c), c], axis=1)

    def loss(states, thetas, t):
        _, _, weights_out, bias_out = unpack(thetas, hidden, vocabulary)
        logits = ops.einsum("ph,phv->pv", states[:, :hidden], weights_out) + bias_out
        target = ops.cast(one_hot(t), logits.dtype)
        return ops.logsumexp(logits, axis=1) - ops.sum(target * logits, axis=1)

    def initial_state(seed=None, dtype="float32"):
        """s_0 = 0 (deterministic: ``seed`` is for the ES protocol)."""
        return ops.zeros((2 * hidden,), dtype)

    return RecurrentSystem(step, loss, initial_state)

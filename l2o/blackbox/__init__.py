"""Black-box training of Keras models with evolution strategies (Salimans et al. 2017).

THE OBJECTIVE IS MAXIMISED. Pass ``mode="min"`` to minimise it instead (a loss, an error
count). An objective needs no gradient: accuracy, an episode's reward, a count all work, and
it may return several values at once (several objectives, combined by ``obj_weights``).

The estimator
-------------
Let theta be the weights perturbed this step (the trainable weights of the layers that the
``strategy`` selects), n = ``n_samples`` (even) and sigma the perturbation scale. Each step

1. draws n/2 directions eps_1 .. eps_{n/2} ~ N(0, I) and mirrors them,
   eps_{j + n/2} = -eps_j (antithetic sampling: the pairs cancel the even part of the
   objective, which carries no gradient information);
2. evaluates the n candidates theta + sigma eps_j on the same ``samples`` (common random
   numbers), giving f_jk for candidate j and objective k (negated under ``mode="min"``;
   NaN counts as the worst value);
3. replaces each objective's column by centred ranks,
   r_jk = rank_k(j) / (n - 1) - 1/2 in [-1/2, 1/2], rank 0 being the smallest and tied
   values sharing the mean of their ranks, so that the estimate ignores the objectives'
   scales and outliers and only their order matters;
4. forms the ascent direction
   g = sum_j (sum_k w_k r_jk) eps_j / (n sigma),  w = ``obj_weights`` (default 1/K each);
5. hands -g to the Keras ``base_optimizer`` as the gradient of theta: Keras optimisers
   minimise, so the negated ascent direction makes them climb f.

A negative ``w_k`` minimises objective k while the others are maximised. Weights of layers
not selected this step are neither perturbed nor given to the optimiser, so their optimiser
slots (momenta) do not advance either (the optimiser's step counter, which Adam's bias
correction uses, counts every step all the same).

Which weights are perturbed (``strategy``; "layers" are the model's layers that own trainable
weights, in ``model.layers`` order, plus one last group for weights the model owns itself):
``all`` every layer every step; ``random`` one layer drawn uniformly each step;
``bottom_up`` cycles 1, 2, ..., L, 1, ...; ``top_down`` cycles L, L-1, ..., 1, L, ...

How candidates are evaluated
----------------------------
- Per candidate: ``objective(model, samples) -> float or sequence of K floats``. During the
  call ``model`` holds the candidate's weights; the ESOptimizer restores them afterwards.
- Vectorised: an objective with a true ``vectorized`` attribute (the ``vectorized``
  decorator sets it) is called once per step as
  ``objective(stacked_weights, samples) -> [n] or [n, K]``, ``stacked_weights`` being numpy
  arrays aligned with ``model.trainable_variables``, each shaped [n, *weight.shape].
  ``batched_forward(model, stacked_weights, inputs)`` runs the model's forward pass for all
  candidates in one compiled call.
- On Ray workers: with ``n_workers > 1`` a per-candidate objective runs on that many Ray
  actors (``l2o.distributed``; Ray is the optional ``distributed`` extra), each given a copy
  of the model and the objective once, at the first step (seconds: each worker imports
  TensorFlow), and a contiguous share of each step's candidates. ``address`` None starts a
  private Ray on this machine (bound to 127.0.0.1, no dashboard), ``"auto"`` or
  ``"ray://host:port"`` joins a cluster; a process already connected to Ray keeps its
  connection. The model, the objective (cloudpickle: lambdas and closures work) and the
  samples are sent to the workers; custom layers must be registered Keras serialisables.
  A worker that dies is restarted by Ray and its share evaluated again. The workers live
  until ``close()`` or the end of a ``with`` block.

The noise, the random layer choice and hence the estimate depend only on ``seed`` and the
objective's values, so every evaluation route gives the same estimate for the same seed.

pytorch-optimize's names
------------------------
For code written against pytorch-optimize (Ramamurthy 2020), whose ES this is:
``Model(net, strategy=SamplingStrategy.BOTTOM_UP)`` wraps a built Keras model with its
layer strategy, ``Objective`` is the base class of ``objective(model, samples)`` and
``Samples`` of the data handed to it, and ``ESOptimizer.gradient_step(samples)`` takes one
step and returns its ascent direction. Given a ``Model``, the ESOptimizer perturbs the
wrapped network and hands the objective a ``Model`` of it (``model.forward(x)`` runs the
candidate); no objective needs these classes, they only carry the names.
"""

from l2o.blackbox.compatibility import Model, Objective, Samples, SamplingStrategy
from l2o.blackbox.evaluators import (
    CandidateEvaluator,
    LocalEvaluator,
    VectorizedEvaluator,
    WorkerEvaluator,
    batched_forward,
    vectorized,
)
from l2o.blackbox.maths import STRATEGIES, centred_ranks, layer_schedule
from l2o.blackbox.optimizer import MODES, ESOptimizer

__all__ = ["MODES", "STRATEGIES", "CandidateEvaluator", "ESOptimizer", "LocalEvaluator", "Model",
           "Objective", "Samples", "SamplingStrategy", "VectorizedEvaluator", "WorkerEvaluator",
           "batched_forward", "centred_ranks", "layer_schedule", "vectorized"]

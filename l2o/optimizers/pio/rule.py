"""PIO: the Path Integral Optimiser (a neural Schrödinger–Föllmer sampler of a model's weights).

PIO treats optimisation as sampling from the Boltzmann target
pi(w) ∝ exp(-E(w)), E = V / sigma, over a model's d weights w, where V is the
training loss on the current batch, with the Path Integral Sampler (Zhang and
Chen, ICLR 2022). A drift u moves x from 0 to approximately pi in time t_end:

    dx = a g u(x, t) dt + b g dW,    x_0 = 0      (``l2o.optimizers.pio.sde``; a = b = 1 unless rescaled)

and each trajectory is scored by

    loss = c_1 + E(x_1) + log N(x_1; 0, b^2 g^2 t_end I),    c_1 = int 0.5 ||v||^2 dt,

v = (a / b) u. Its mean over trajectories is KL(path law || target path law)
- log Z, so training u to lower it makes x_1 a sample of pi; the training
objective is that mean divided by d. -E[loss] is a lower bound on log Z, and
with the stochastic cost s = int v . dW (zero mean, left out of the training
loss for its variance) exp(-(loss + s)) are importance weights whose log-mean
estimates log Z.

Drifts (``drift_format``):
- ``f``: a Fourier-feature network u = f(x, t): time features
  [sin(t omega + phi), cos(t omega + phi)], omega = linspace(0.1, 100, C),
  learnable phase phi, through a two-layer GELU encoder; x through a dense
  layer; their sum through ``layers`` GELU dense layers of C = ``channels``
  units; a zero-initialised output layer (u = 0 at the start).
- ``grad``: u = f(x, t) - s(t) * clip(grad E(x)), s a time-conditioned scale
  (from the same time features; zero-initialised) and the clip at
  +-``grad_clip`` per coordinate.
- ``mc`` (PIS-MC, no network): the Föllmer drift estimated by Monte Carlo,
  u = (b / a) b g sum_i grad f(y_i) / sum_i f(y_i), y_i = x + b g sqrt(t_end - t) Z_i,
  f = exp(-E) / N(.; 0, b^2 g^2 t_end I), with ``mc_samples`` draws (computed
  as softmax-weighted scores, in log space).

``sigma_rescaling``: ``none`` (a = b = 1); ``static`` (drift scaled by a = sigma,
diffusion by b = sqrt(sigma), with the configured sigma), so that the prior's
spread follows the target's temperature; ``dynamic`` the same with the
current sigma, which differs from sigma only when ``tie_sigma_to_learning_rate`` makes
sigma_t = sigma * lr_t / lr_0 follow a learning-rate schedule, or ``sigma_schedule`` (a
Keras learning-rate schedule s, or its serialized dict) gives sigma_t = sigma * s(t) / s(0)
at the optimiser's step t. Either applies in ``PIOOptimizer``; training the drift from a
config (``l2o.optimizers.pio.drift_estimator``) uses the constant sigma.

Each PIO step (``PIOOptimizer``): ``drift_steps`` Adam steps
(``l2o.differentiable.adam`` at the optimiser's ``learning_rate``) on the objective with ``trajectories``
paths against the current batch's V, then one more batch of paths whose
terminal point with the lowest V (``weights_from: best``) or whose mean
(``mean``) becomes the model's weights. The model's previous weights play no
part: PIO samples, it does not descend.
"""

import copy
import math

import keras
import numpy as np
from keras import ops

from l2o import backend
from l2o.optimizers.cells import dense, init_dense
from l2o.optimizers.pio import sde
from l2o.tree import unflatten_like
from l2o.validation import ConfigError, check_choice, check_range, first_line

DRIFT_FORMATS = ("f", "grad", "mc")
SIGMA_RESCALINGS = ("none", "static", "dynamic")
WEIGHTS_FROM = ("best", "mean")


def energy_gradient(energy, x):
    """grad E at each row of ``x`` [n, d] (``energy`` maps [n, d] to [n])."""
    (_, _), grads = backend.value_and_grad(lambda xs: (ops.sum(energy(xs[0])), None), None)([x])
    return grads[0]


def sigma_schedule_of(value):
    """``network/sigma_schedule`` as a Keras ``LearningRateSchedule`` with s(0) > 0; ``value`` is
    one, or its serialized dict (``keras.optimizers.schedules.serialize``, as configs hold)."""
    schedules, schedule = keras.optimizers.schedules, value
    try:
        if isinstance(value, dict):
            schedule = schedules.deserialize(copy.deepcopy(value))
        start = float(schedule(0)) if isinstance(schedule, schedules.LearningRateSchedule) \
            else None
    except Exception as error:  # noqa: BLE001  (whatever the schedule's class raises)
        raise ConfigError(f"network/sigma_schedule: not a usable Keras learning-rate schedule "
                          f"({first_line(error)})") from None
    if start is None:  # Keras's deserialize hands back an unknown class_name as it is
        raise ConfigError(f"network/sigma_schedule: expected a Keras LearningRateSchedule or "
                          f"its serialized {{class_name: ..., config: {{...}}}}, got {value!r}")
    if not 0 < start < math.inf:
        raise ConfigError(f"network/sigma_schedule: s(0) must be positive and finite, as "
                          f"sigma_t = sigma * s(t) / s(0); got s(0) = {start!r}")
    return schedule


class PIORule:
    """PIO's settings and maths: drift networks, the sampler's loss, weight selection.

    Not an ``UpdateRule``: PIO needs the loss at weights other than the
    current ones, so ``PIOOptimizer`` drives it through ``apply_loss``.
    The keyword defaults are the config's ``network`` defaults.
    """

    def __init__(self, drift_format="f", sigma=0.01, sigma_rescaling="none",
                 tie_sigma_to_learning_rate=False, t_end=sde.T_END, diffusion=sde.DIFFUSION, dt=sde.DT,
                 trajectories=32, drift_steps=1, channels=64, layers=2, mc_samples=16,
                 grad_clip=1e4, weights_from="best", sigma_schedule=None):
        self.drift_format, self.sigma = drift_format, float(sigma)
        self.sigma_rescaling = sigma_rescaling
        self.tie_sigma_to_learning_rate = bool(tie_sigma_to_learning_rate)
        self.sigma_schedule = None if sigma_schedule is None else sigma_schedule_of(
            sigma_schedule)
        self.t_end, self.diffusion, self.dt = float(t_end), float(diffusion), float(dt)
        self.trajectories, self.drift_steps = int(trajectories), int(drift_steps)
        self.channels, self.layers = int(channels), int(layers)
        self.mc_samples, self.grad_clip = int(mc_samples), float(grad_clip)
        self.weights_from = weights_from

    @classmethod
    def validate_config(cls, network):
        for key, options in (("drift_format", DRIFT_FORMATS),
                             ("sigma_rescaling", SIGMA_RESCALINGS),
                             ("weights_from", WEIGHTS_FROM)):
            check_choice(f"network/{key}", network[key], options)
        for key in ("sigma", "t_end", "diffusion", "dt", "grad_clip"):
            check_range(f"network/{key}", network[key], 0.0)
        for key in ("trajectories", "channels", "layers", "mc_samples"):
            check_range(f"network/{key}", network[key], 0)
        check_range("network/drift_steps", network["drift_steps"], -1)
        try:
            sde.steps(network["t_end"], network["dt"])
        except ValueError as error:
            raise ConfigError(f"network/dt: {error}") from None
        if network["sigma_schedule"] is not None:
            if network["tie_sigma_to_learning_rate"]:
                raise ConfigError("network/sigma_schedule: sets how sigma changes, as "
                                  "tie_sigma_to_learning_rate: true does; give one of them")
            # Kept as the serialized dict, so that a config or get_config holding it is JSON.
            network["sigma_schedule"] = keras.optimizers.schedules.serialize(
                sigma_schedule_of(network["sigma_schedule"]))

    # ------------------------------------------------------------------ drift

    def init_meta_weights(self, seed, dimension):
        """The drift network's initial weights for d = ``dimension`` (none for ``mc``)."""
        if self.drift_format == "mc":
            return {}
        channels, seeds = self.channels, iter(range(seed * 1000, seed * 1000 + 100))
        weights = {"time/phase": np.zeros((channels,), np.float32)}
        weights.update(init_dense("time/in", 2 * channels, channels, next(seeds)))
        weights.update(init_dense("time/out", channels, channels, next(seeds)))
        weights.update(init_dense("state/in", dimension, channels, next(seeds)))
        for layer in range(self.layers):
            weights.update(init_dense(f"trunk/{layer}", channels, channels, next(seeds)))
        weights.update(init_dense("output", channels, dimension, next(seeds), "zeros"))
        if self.drift_format == "grad":
            weights.update(init_dense("scale/in", 2 * channels, channels, next(seeds)))
            weights.update(init_dense("scale/out", channels, dimension, next(seeds), "zeros"))
        return weights

    def time_features(self, weights, t):
        frequencies = ops.cast(ops.linspace(0.1, 100.0, self.channels), t.dtype)
        angles = t * frequencies + weights["time/phase"]
        return ops.concatenate([ops.sin(angles), ops.cos(angles)])[None]

    def network(self, weights, x, t):
        """f(x, t), the Fourier-feature drift network."""
        features = self.time_features(weights, t)
        time = dense(weights, "time/out", ops.gelu(dense(weights, "time/in", features)))
        hidden = dense(weights, "state/in", x) + time
        for layer in range(self.layers):
            hidden = dense(weights, f"trunk/{layer}", ops.gelu(hidden))
        return dense(weights, "output", ops.gelu(hidden))

    def drift(self, weights, energy, scales, seed):
        """``u(x, t)`` for the chosen format; ``scales`` = (a, b); ``seed`` feeds PIS-MC."""
        drift_scale, noise_scale = scales
        if self.drift_format == "f":
            return lambda x, t: self.network(weights, x, t)
        if self.drift_format == "grad":
            def with_gradient(x, t):
                features = self.time_features(weights, t)
                scale = dense(weights, "scale/out",
                              ops.gelu(dense(weights, "scale/in", features)))
                gradient = ops.clip(energy_gradient(energy, x), -self.grad_clip, self.grad_clip)
                return self.network(weights, x, t) - scale * gradient
            return with_gradient

        spread = noise_scale * self.diffusion
        prior_variance = spread ** 2 * self.t_end

        def monte_carlo(x, t):
            step_seed = backend.fold_in(seed, ops.round(t / self.dt))
            count, dimension = ops.shape(x)[0], ops.shape(x)[1]
            normal = backend.stateless_normal([self.mc_samples, count, dimension], step_seed,
                                              dtype=x.dtype)
            remaining = ops.sqrt(ops.maximum(self.t_end - t, 0.0))
            points = ops.reshape(x[None] + spread * remaining * normal, (-1, dimension))
            log_f = -energy(points) + 0.5 * ops.sum(ops.square(points), axis=1) / prior_variance
            score = (-energy_gradient(energy, points) + points / prior_variance)
            weights_ = ops.softmax(ops.reshape(log_f, (self.mc_samples, count)), axis=0)
            mean_score = ops.sum(weights_[..., None]
                                 * ops.reshape(score, (self.mc_samples, count, dimension)),
                                 axis=0)
            return (noise_scale / drift_scale) * spread * mean_score

        return monte_carlo

    # ------------------------------------------------------------------ sampling

    def scales(self, sigma):
        """(a, b): the drift and noise scales that ``sigma_rescaling`` sets for ``sigma``."""
        if self.sigma_rescaling == "none":
            return 1.0, 1.0
        return sigma, ops.sqrt(sigma)

    def sample(self, weights, energy, dimension, trajectories, seed, scales=(1.0, 1.0),
               dtype="float32"):
        """Paths to t_end: ``{"samples", "energy", "loss", "log_weight"}`` per trajectory.

        ``loss`` = c_1 + E(x_1) + log N(x_1; 0, b^2 g^2 t_end I) (the training
        loss, not divided by d) and ``log_weight`` = -(loss + s), the log
        importance weight of the trajectory against the target.
        """
        drift_scale, noise_scale = scales
        seed = backend.stateless_seed(seed)
        terminal, running, stochastic = sde.integrate(
            self.drift(weights, energy, scales, backend.fold_in(seed, 1)),
            dimension, trajectories, seed, self.t_end, self.diffusion, self.dt, drift_scale,
            noise_scale, dtype)
        prior = sde.terminal_prior(dimension, self.t_end, self.diffusion, noise_scale, dtype)
        energies = energy(terminal)
        loss = running + energies + prior.log_prob(terminal)
        return {"samples": terminal, "energy": energies, "loss": loss,
                "log_weight": -(loss + stochastic)}

    @staticmethod
    def energy_of(potential, like, sigma):
        """E(x) = V(w(x)) / sigma over rows x [n, d]; ``potential`` takes a list shaped like ``like``."""
        def energy(points):
            values = ops.vectorized_map(
                lambda point: potential(unflatten_like(point, like)), points)
            return values / sigma
        return energy

    def objective(self, weights, energy, dimension, seed, scales):
        """The training objective: the mean trajectory loss divided by d."""
        result = self.sample(weights, energy, dimension, self.trajectories, seed, scales)
        return ops.mean(result["loss"]) / dimension

    def select(self, samples, potentials):
        """The weights PIO moves to: the lowest-V terminal point, or their mean.

        Samples or potentials that are not finite are left out; with none left
        the result is not finite, and the caller keeps the weights it had.
        """
        finite = ops.all(ops.isfinite(samples), axis=1) & ops.isfinite(potentials)
        if self.weights_from == "mean":
            kept = ops.cast(finite, samples.dtype)[:, None]
            return ops.sum(ops.where(finite[:, None], samples, 0.0), axis=0) / ops.sum(kept)
        return samples[ops.argmin(ops.where(finite, potentials, np.inf))] + ops.where(
            ops.any(finite), 0.0, np.nan)


def log_normaliser_estimates(result):
    """(lower bound -E[loss], log-mean-exp importance estimate) of log Z."""
    log_weights = result["log_weight"]
    count = ops.cast(ops.shape(log_weights)[0], log_weights.dtype)
    return -ops.mean(result["loss"]), ops.logsumexp(log_weights) - ops.log(count)


def fit_sampler(rule, energy, dimension, iterations, learning_rate=1e-3, seed=0,
                progress=None):
    """PIS on its own: trains ``rule``'s drift network to sample exp(-E), E = ``energy``.

    Adam on the objective (mean loss / d) with ``rule.trajectories`` fresh
    paths per iteration; returns the trained weights as numpy arrays.
    ``progress(iteration, objective)`` is called after each iteration.
    """
    variables = {name: keras.Variable(value, name=name.replace("/", "_"))
                 for name, value in rule.init_meta_weights(seed, dimension).items()}
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(list(variables.values()))

    def objective(iteration):
        weights = {k: ops.convert_to_tensor(v) for k, v in variables.items()}
        return rule.objective(weights, energy, dimension, ops.stack([ops.convert_to_tensor(seed, "int32"), iteration]),
                              (1.0, 1.0)), None

    def train_step(iteration):
        (value, _), grads = backend.value_and_grad(objective, list(variables.values()))(
            iteration)
        optimizer.apply(grads, list(variables.values()))
        return value

    train_step = backend.compile_fn(
        train_step, variables=list(variables.values()) + list(optimizer.variables))
    for iteration in range(iterations):
        value = train_step(ops.convert_to_tensor(iteration, "int32"))
        if progress is not None:
            progress(iteration, float(value))
    return {name: np.asarray(v.numpy()) for name, v in variables.items()}


__all__ = ["PIORule", "energy_gradient", "fit_sampler", "log_normaliser_estimates"]

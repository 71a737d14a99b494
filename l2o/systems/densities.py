"""Sampling targets with known normalisers: the Path Integral Sampler's benchmark densities.

Each target is an energy E(x) = -log rho(x) over rows x [n, d] (keras.ops,
batched), with Z = int rho(x) dx known in closed form, so a sampler's log Z
estimate has an exact error. The definitions follow the Path Integral
Optimiser repository's PIS targets (``configs/datamodule/{ou,funnel,nine}.yaml``),
whose densities are normalised (log Z = 0):

- ``mixture_1d`` (``ou.yaml``, OUGaussianMixture): K = 2 equally weighted
  N(m_k, 0.5^2) with the m_k evenly spaced on [-1, 1]:
  rho(x) = (1 / K) sum_k N(x; m_k, s^2).
- ``funnel`` (``funnel.yaml``, FunnelSet, d = 10): x_0 ~ N(0, 1) and
  x_i | x_0 ~ N(0, e^{x_0}) for i = 1..d-1:
  E(x) = x_0^2 / 2 + sum_i [x_i^2 e^{-x_0} / 2 + x_0 / 2] + (d / 2) log 2 pi.
- ``mixture_2d`` (``ps.yaml`` via ``nine.yaml``, MG2D): K = 3 equally weighted
  isotropic N(mu_k, (0.15 r)^2 I) with mu_k = r (cos a_k, sin a_k),
  r = 1, a_k = 2 * 3.14 * k / K (the upstream's 3.14, not pi).

``sample(count, generator)`` draws exact samples with numpy, for the
samplers' reference statistics and for the tests.
"""

import math

import numpy as np
from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixture:
    """Equally weighted isotropic Gaussians N(means[k], std^2 I), normalised (log Z = 0)."""

    log_normaliser = 0.0

    def __init__(self, name, means, std):
        self.name = name
        self.means = np.asarray(means, np.float32)
        self.std = float(std)
        self.dimension = self.means.shape[1]

    def energy(self, x):
        squared = ops.sum(ops.square(x[:, None, :] - ops.cast(self.means, x.dtype)[None]), axis=2)
        log_components = (-0.5 * squared / self.std ** 2
                          - self.dimension * (math.log(self.std) + 0.5 * LOG_2PI))
        return -(ops.logsumexp(log_components, axis=1) - math.log(len(self.means)))

    def sample(self, count, generator):
        modes = generator.integers(len(self.means), size=count)
        return self.means[modes] + self.std * generator.standard_normal(
            (count, self.dimension)).astype(np.float32)

    def mode_of(self, x):
        """The index of each row's nearest mean (numpy): the mode it was drawn from, roughly."""
        return np.argmin(((x[:, None, :] - self.means[None]) ** 2).sum(axis=2), axis=1)


class Funnel:
    """The upstream's funnel: x_0 ~ N(0, 1), x_{1..d-1} | x_0 ~ N(0, e^{x_0} I); log Z = 0."""

    log_normaliser = 0.0

    def __init__(self, dimension=10, name="funnel"):
        self.name, self.dimension = name, int(dimension)

    def energy(self, x):
        dominant, others = x[:, 0], x[:, 1:]
        others_count = self.dimension - 1
        return (0.5 * ops.square(dominant)
                + 0.5 * ops.sum(ops.square(others), axis=1) * ops.exp(-dominant)
                + 0.5 * others_count * dominant + 0.5 * self.dimension * LOG_2PI)

    def sample(self, count, generator):
        dominant = generator.standard_normal((count, 1))
        others = np.exp(0.5 * dominant) * generator.standard_normal((count, self.dimension - 1))
        return np.concatenate([dominant, others], axis=1).astype(np.float32)


def mixture_1d(modes=2, half_width=1.0, std=0.5):
    """``ou.yaml``'s OUGaussianMixture (nmode 2, xlim 1.0, scale 0.5, ndim 1)."""
    half_width = 0.01 if modes == 1 else half_width  # as upstream: one mode sits near 0
    return GaussianMixture("mixture_1d", np.linspace(-half_width, half_width, modes)[:, None],
                           std)


def mixture_2d(modes=3, radius=1.0, scale=0.15):
    """``nine.yaml``'s MG2D (nmode 3, xlim 1.0, scale 0.15): modes on a circle."""
    angles = np.linspace(0.0, 2 * 3.14, modes, endpoint=False)
    return GaussianMixture("mixture_2d", radius * np.stack([np.cos(angles), np.sin(angles)], 1),
                           scale * radius)


TARGETS = {"mixture_1d": mixture_1d, "funnel": Funnel, "mixture_2d": mixture_2d}

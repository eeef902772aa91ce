"""Weight initialisers: fill a (fan_in, fan_out) weight matrix in place.

Biases always start at zero. Glorot/Xavier keeps the variance of activations and
gradients equal across layers for tanh/sigmoid (Glorot & Bengio 2010); He doubles it
for ReLU-like units (He et al. 2015).
"""
from __future__ import annotations

import math

import numpy as np

from .registry import Configurable, Registry, check_number

INITIALIZERS: Registry[Initializer] = Registry("initializer")


class Initializer(Configurable):
    def fill(self, w: np.ndarray, rng: np.random.Generator) -> None:
        """Fill ``w`` of shape (fan_in, fan_out) in place."""
        raise NotImplementedError


@INITIALIZERS.register
class Zeros(Initializer):
    """All zeros: deterministic, for tests (a network of zeros cannot break symmetry)."""

    name = "zeros"

    def fill(self, w, rng):
        w[...] = 0.0


@INITIALIZERS.register
class Uniform(Initializer):
    """U(-limit, limit)."""

    name = "uniform"
    config_keys = ("limit",)

    def __init__(self, limit: float = 0.05) -> None:
        self.limit = check_number("limit", limit, low=0, low_open=True)

    def fill(self, w, rng):
        w[...] = rng.uniform(-self.limit, self.limit, size=w.shape)


@INITIALIZERS.register
class Normal(Initializer):
    """N(0, std^2)."""

    name = "normal"
    config_keys = ("std",)

    def __init__(self, std: float = 0.05) -> None:
        self.std = check_number("std", std, low=0, low_open=True)

    def fill(self, w, rng):
        w[...] = rng.normal(0.0, self.std, size=w.shape)


@INITIALIZERS.register
class GlorotUniform(Initializer):
    r"""Xavier/Glorot uniform: :math:`U(-l, l),\ l = \sqrt{6 / (fan_{in} + fan_{out})}`."""

    name = "glorot_uniform"

    def fill(self, w, rng):
        limit = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        w[...] = rng.uniform(-limit, limit, size=w.shape)


@INITIALIZERS.register
class GlorotNormal(Initializer):
    r"""Xavier/Glorot normal: :math:`N(0, 2 / (fan_{in} + fan_{out}))`."""

    name = "glorot_normal"

    def fill(self, w, rng):
        w[...] = rng.normal(0.0, math.sqrt(2.0 / (w.shape[0] + w.shape[1])), size=w.shape)


@INITIALIZERS.register
class HeUniform(Initializer):
    r"""He uniform: :math:`U(-l, l),\ l = \sqrt{6 / fan_{in}}`."""

    name = "he_uniform"

    def fill(self, w, rng):
        limit = math.sqrt(6.0 / w.shape[0])
        w[...] = rng.uniform(-limit, limit, size=w.shape)


@INITIALIZERS.register
class HeNormal(Initializer):
    r"""He normal: :math:`N(0, 2 / fan_{in})`."""

    name = "he_normal"

    def fill(self, w, rng):
        w[...] = rng.normal(0.0, math.sqrt(2.0 / w.shape[0]), size=w.shape)


# Aliases users reach for; resolved to the canonical names above.
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal", "xavier": "glorot_uniform",
           "glorot": "glorot_uniform", "he": "he_normal"}


def get_initializer(value: object) -> Initializer:
    if isinstance(value, str):
        value = ALIASES.get(value, value)
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        value = {**value, "name": ALIASES.get(value["name"], value["name"])}
    return INITIALIZERS.resolve(value)

"""A latent variable model p(x, z; θ) = p(z; θ) p(x | z; θ), written as two pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import distrax
import jax

from lvmjax import _validation
from lvmjax.types import Array, Params

__all__ = ["LatentVariableModel", "log_joint", "log_likelihood", "sample"]


class LatentVariableModel(NamedTuple):
    """A generative model z ~ p(z; θ), x | z ~ p(x | z; θ) for ONE datapoint.

    Both fields are pure functions returning distrax distributions with an empty
    batch shape: one distribution over one latent `z` and one over one datapoint `x`.

    Attributes:
      prior: `prior(params) -> p(z; θ)`.
      likelihood: `likelihood(params, z) -> p(x | z; θ)`.
    """

    prior: Callable[[Params], distrax.Distribution]
    likelihood: Callable[[Params, Array], distrax.Distribution]


def log_joint(model: LatentVariableModel, params: Params, x: Array, z: Array) -> Array:
    """The log-joint of one datapoint and one latent.

        log p(x, z; θ) = log p(z; θ) + log p(x | z; θ)

    Args:
      model: the `LatentVariableModel`.
      params: θ, any pytree the model's functions accept.
      x: one datapoint, shaped like the likelihood's event.
      z: one latent, shaped like the prior's event.

    Returns:
      A scalar.

    Raises:
      ValueError: if `x` or `z` is not one event of its distribution (a batch
        included: use `jax.vmap`), or if the model returns batched distributions.
    """
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    _validation.check_event_shape(z, prior, "z", "model.prior(params)")
    return prior.log_prob(z) + log_likelihood(model, params, x, z)


def log_likelihood(model: LatentVariableModel, params: Params, x: Array, z: Array) -> Array:
    """log p(x | z; θ) of one datapoint given one latent, with the checks of `log_joint`."""
    likelihood = model.likelihood(params, z)
    _validation.check_single_distribution(likelihood, "model.likelihood(params, z)")
    _validation.check_event_shape(x, likelihood, "x", "model.likelihood(params, z)")
    return likelihood.log_prob(x)


def sample(key: Array, model: LatentVariableModel, params: Params) -> tuple[Array, Array]:
    """Ancestral sampling of one pair: z ~ p(z; θ), then x ~ p(x | z; θ).

    Returns:
      (z, x).
    """
    key_z, key_x = jax.random.split(key)
    z = model.prior(params).sample(seed=key_z)
    return z, model.likelihood(params, z).sample(seed=key_x)

"""The mixture of Gaussians as a latent variable model (the seed texts' shallow LVM).

    z ~ Categorical(π),    x | z = k ~ N(μ_k, Σ_k),    π = softmax(logits),  Σ_k = L_k L_kᵀ

The latent is one of K components, so the marginal and the posterior are
finite sums (seed text, §2.2):

    p(x; θ)          = Σ_k π_k N(x; μ_k, Σ_k)
    p(z = k | x; θ)  = π_k N(x; μ_k, Σ_k) / p(x; θ)     (the responsibilities)
"""

from __future__ import annotations

from typing import NamedTuple

import distrax
import jax

from lvmjax import _validation
from lvmjax.model import LatentVariableModel

Array = jax.Array


class Params(NamedTuple):
    """θ of a K-component mixture of D-dimensional Gaussians."""

    logits: Array  # shape=(K,): log π_k up to a constant
    means: Array  # shape=(K, D): μ_k
    scale_tril: Array  # shape=(K, D, D): L_k, lower-triangular with Σ_k = L_k L_kᵀ


def prior(params: Params) -> distrax.Distribution:
    """p(z) = Categorical(softmax(logits))."""
    return distrax.Categorical(logits=params.logits)


def likelihood(params: Params, z: Array) -> distrax.Distribution:
    """p(x | z = k; θ) = N(μ_k, L_k L_kᵀ)."""
    return distrax.MultivariateNormalTri(params.means[z], params.scale_tril[z])


model = LatentVariableModel(prior=prior, likelihood=likelihood)


def components(params: Params) -> distrax.Distribution:
    """The K Gaussians N(μ_k, Σ_k) as one distribution with batch_shape (K,)."""
    return distrax.MultivariateNormalTri(params.means, params.scale_tril)


def marginal(params: Params) -> distrax.Distribution:
    """p(x; θ) = Σ_k π_k N(x; μ_k, Σ_k)."""
    return distrax.MixtureSameFamily(prior(params), components(params))


def log_marginal(params: Params, x: Array) -> Array:
    """Exact log p(x; θ) = log Σ_k π_k N(x; μ_k, Σ_k) of one datapoint x, shape (D,)."""
    distribution = marginal(params)
    _validation.check_event_shape(x, distribution, "x", "the Gaussian mixture")
    return distribution.log_prob(x)


def posterior(params: Params, x: Array) -> distrax.Distribution:
    """Exact p(z | x; θ): a Categorical whose probabilities are the responsibilities."""
    _validation.check_event_shape(x, marginal(params), "x", "the Gaussian mixture")
    log_joint = jax.nn.log_softmax(params.logits) + components(params).log_prob(x)
    return distrax.Categorical(logits=log_joint - jax.nn.logsumexp(log_joint))

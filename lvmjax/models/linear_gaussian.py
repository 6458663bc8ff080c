"""The linear-Gaussian latent variable model: factor analysis and probabilistic PCA.

    z ~ N(0, I_d),    x | z ~ N(W z + b, Ψ),    Ψ diagonal

With a diagonal Ψ this is factor analysis; with Ψ = σ² I it is probabilistic PCA
(Tipping & Bishop 1999). Everything is Gaussian, so the marginal and the
posterior are known in closed form (Bishop 2006, §12.2):

    p(x; θ)     = N(x; b, W Wᵀ + Ψ)
    p(z | x; θ) = N(z; M⁻¹ Wᵀ Ψ⁻¹ (x - b), M⁻¹),    M = I + Wᵀ Ψ⁻¹ W

and so is the ELBO of any Gaussian q(z) = N(m, S) (`exact_elbo`). These are the
ground truth against which lvmjax's estimators are tested.
"""

from __future__ import annotations

from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation
from lvmjax.model import LatentVariableModel

Array = jax.Array


class Params(NamedTuple):
    """θ of the linear-Gaussian model, with data dimension D and latent dimension d."""

    weight: Array  # shape=(D, d): W, the factor loadings
    bias: Array  # shape=(D,): b, the mean of x
    noise_variance: Array  # shape=(D,): diag Ψ (factor analysis), or shape=(): σ² (PPCA)


def _noise_variance(params: Params) -> Array:
    return jnp.broadcast_to(params.noise_variance, params.bias.shape)


def prior(params: Params) -> distrax.Distribution:
    """p(z) = N(0, I_d)."""
    latent_dim = params.weight.shape[-1]
    dtype = params.weight.dtype
    return distrax.MultivariateNormalDiag(jnp.zeros(latent_dim, dtype),
                                          jnp.ones(latent_dim, dtype))


def likelihood(params: Params, z: Array) -> distrax.Distribution:
    """p(x | z; θ) = N(W z + b, Ψ)."""
    return distrax.MultivariateNormalDiag(params.weight @ z + params.bias,
                                          jnp.sqrt(_noise_variance(params)))


model = LatentVariableModel(prior=prior, likelihood=likelihood)


def marginal(params: Params) -> distrax.Distribution:
    """p(x; θ) = N(b, W Wᵀ + Ψ)."""
    covariance = params.weight @ params.weight.T + jnp.diag(_noise_variance(params))
    return distrax.MultivariateNormalFullCovariance(params.bias, covariance)


def log_marginal(params: Params, x: Array) -> Array:
    """Exact log p(x; θ) = log N(x; b, W Wᵀ + Ψ) of one datapoint x, shape (D,)."""
    distribution = marginal(params)
    _validation.check_event_shape(x, distribution, "x", "the linear-Gaussian model")
    return distribution.log_prob(x)


def posterior(params: Params, x: Array) -> distrax.Distribution:
    """Exact p(z | x; θ) = N(M⁻¹ Wᵀ Ψ⁻¹ (x - b), M⁻¹), M = I + Wᵀ Ψ⁻¹ W, for one x of shape (D,)."""
    _validation.check_event_shape(x, marginal(params), "x", "the linear-Gaussian model")
    weight_over_noise = params.weight / _noise_variance(params)[:, None]  # Ψ⁻¹ W
    precision = jnp.eye(params.weight.shape[-1], dtype=params.weight.dtype)
    precision = precision + params.weight.T @ weight_over_noise
    cholesky = jnp.linalg.cholesky(precision)
    covariance = jax.scipy.linalg.cho_solve((cholesky, True), jnp.eye(precision.shape[0],
                                                                      dtype=precision.dtype))
    covariance = 0.5 * (covariance + covariance.T)
    mean = covariance @ (weight_over_noise.T @ (x - params.bias))
    return distrax.MultivariateNormalFullCovariance(mean, covariance)


def exact_elbo(params: Params, q: distrax.Distribution, x: Array) -> Array:
    """The ELBO of a Gaussian q(z) = N(m, S), in closed form, for one x of shape (D,).

        ELBO = E_q[log p(x | z; θ)] - KL(q ‖ N(0, I))
             = log N(x; W m + b, Ψ) - ½ tr(Ψ⁻¹ W S Wᵀ) - KL(q ‖ N(0, I))

    Args:
      params: θ.
      q: a distrax multivariate normal over z (any covariance form).
      x: one datapoint.

    Returns:
      A scalar, equal to log p(x; θ) - KL(q ‖ p(z | x; θ)).
    """
    _validation.check_event_shape(x, marginal(params), "x", "the linear-Gaussian model")
    noise_variance = _noise_variance(params)
    mean, covariance = q.mean(), q.covariance()
    expected_log_likelihood = (
        likelihood(params, mean).log_prob(x)
        - 0.5 * jnp.sum((params.weight @ covariance * params.weight).sum(-1) / noise_variance)
    )
    return expected_log_likelihood - q.kl_divergence(prior(params))

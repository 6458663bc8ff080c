"""How a VAE uses its latent space: active units, the KL per dimension, rate and distortion, I(x; z).

These are dataset-level quantities of an `AmortizedModel` with encoder q(z | x; φ), prior p(z)
and decoder p(x | z; θ): each function takes a batch `data` of shape (N, D) and vmaps over its
datapoints inside. With p_data the empirical distribution of the N datapoints and the aggregate
posterior q(z) = (1/N) Σ_j q(z | x_j):

    active units     A_u = Var_x(E_{q(z|x)}[z_u]) > threshold               (Burda et al. 2016, §5.2)
    rate             R = E_x KL(q(z | x) ‖ p(z))                           (Alemi et al. 2018)
    distortion       D = −E_x E_{q(z|x)}[log p(x | z)]
    ELBO             E_x ELBO(x) = −(R + D)
    information      I(x; z) = E_x E_{q(z|x)}[log q(z | x) − log q(z)]     (Hoffman & Johnson 2016)

The rate splits into the information the code carries about x and the mismatch of the aggregate
posterior with the prior (Hoffman & Johnson 2016, "ELBO surgery"):

    E_x KL(q(z | x) ‖ p(z)) = I(x; z) + KL(q(z) ‖ p(z)),   so R ≥ I(x; z).

A collapsed posterior (q(z | x) = p(z) for every x) has R = I = 0 and no active units.

Every function is pure and jit-able with the model and the int arguments static; the Monte Carlo
ones take the key first and draw the k-th latent of datapoint i with the key
fold_in(fold_in(key, i), k), the convention of `lvmjax.estimators`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from lvmjax import _validation
from lvmjax.amortized import AmortizedModel
from lvmjax.errors import ArgumentTypeError
from lvmjax.estimators import _sample_latents
from lvmjax.model import log_likelihood
from lvmjax.types import Array, Params

__all__ = [
    "ActiveUnits",
    "MutualInformation",
    "RateDistortion",
    "active_units",
    "kl_per_dimension",
    "mutual_information",
    "rate_distortion",
]


class ActiveUnits(NamedTuple):
    """The latent dimensions that the encoder's mean varies along (Burda et al. 2016, §5.2)."""

    num_active: Array  # shape=(), int32: Σ_u active_u (not `count`, which would shadow tuple.count)
    variances: Array  # shape=(d,): A_u = Var_x(E_{q(z|x)}[z_u]), the population variance over the N datapoints
    active: Array  # shape=(d,), bool: A_u > threshold


class RateDistortion(NamedTuple):
    """The two terms of the negative ELBO, averaged over the data (Alemi et al. 2018)."""

    rate: Array  # shape=(): R = E_x KL(q(z | x) ‖ p(z)), a Monte Carlo estimate
    distortion: Array  # shape=(): D = −E_x E_q[log p(x | z)]
    elbo: Array  # shape=(): −(R + D), the mean ELBO of the data


class MutualInformation(NamedTuple):
    """I(x; z) under q(x, z) = p_data(x) q(z | x), with its ceiling for N datapoints."""

    estimate: Array  # shape=(): E_x E_q[log q(z | x) − log q(z)], q(z) = (1/N) Σ_j q(z | x_j)
    upper_bound: Array  # shape=(): log N, which the estimate never exceeds


def _check_arguments(amortized: AmortizedModel, data: Array) -> Array:
    if not isinstance(amortized, AmortizedModel):
        raise ArgumentTypeError(f"amortized must be an AmortizedModel, got {type(amortized).__name__}.")
    return _validation.check_data_matrix(data)


def _datapoint_keys(key: Array, num_data: int) -> Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(num_data))


def _posterior_mean(key: Array, q: distrax.Distribution, num_samples: int) -> Array:
    """E_q[z]: q's closed-form mean where it has one, else the mean of `num_samples` draws (a flow)."""
    try:
        return q.mean()
    except NotImplementedError:  # distrax.Transformed with a bijector whose Jacobian is not constant
        latents, _ = _sample_latents(key, q, num_samples)
        return jnp.mean(latents, axis=0)


def active_units(
    key: Array,
    amortized: AmortizedModel,
    params: Params,
    data: Array,
    threshold: float = 0.01,
    num_samples: int = 64,
) -> ActiveUnits:
    """The active units of the latent space (Burda et al. 2016, "Importance Weighted Autoencoders", §5.2).

        A_u = Cov_x(E_{q(z|x)}[z_u]),   unit u is active if A_u > threshold

    A unit whose posterior mean does not move with x carries no information about x (its q(z_u | x)
    is, in practice, the prior); Burda et al. use the threshold 10⁻². The covariance over x is the
    population variance (ddof = 0) over the N datapoints. E_q[z | x] is q's closed-form mean where
    distrax has one; otherwise (a normalizing flow) the mean of `num_samples` draws from q, made
    with the keys fold_in(fold_in(key, i), k). The key is unused when every mean is closed-form.

    Args:
      key: PRNG key, for the Monte Carlo means only.
      amortized: the `AmortizedModel`.
      params: its parameters, {"encoder": φ, "decoder": θ}.
      data: the datapoints, shape (N, D).
      threshold: the activity threshold on A_u.
      num_samples: K, a static int >= 1: draws per datapoint for a q without a closed-form mean.

    Returns:
      An `ActiveUnits`.
    """
    num_samples = _validation.check_num_samples(num_samples)
    data = _check_arguments(amortized, data)

    def mean_of(key_i, x):
        return _posterior_mean(key_i, amortized.encode(params, x), num_samples)

    means = jax.vmap(mean_of)(_datapoint_keys(key, data.shape[0]), data)  # (N, d)
    variances = jnp.var(means, axis=0)
    active = variances > threshold
    return ActiveUnits(jnp.sum(active, dtype=jnp.int32), variances, active)


def _diagonal_gaussian(dist: distrax.Distribution, name: str, other: str) -> distrax.Normal:
    if not isinstance(dist, distrax.MultivariateNormalDiag):
        raise ArgumentTypeError(
            f"kl_per_dimension needs {name} to be a distrax.MultivariateNormalDiag, got {type(dist).__name__} "
            f"(and {other}): KL(q(z | x) ‖ p(z)) splits into one closed-form term per latent dimension only "
            "when both factorize over the dimensions. Use rate_distortion for the total KL of any q."
        )
    return distrax.Normal(dist.loc, dist.scale_diag)


def kl_per_dimension(amortized: AmortizedModel, params: Params, data: Array) -> Array:
    """The KL of each latent dimension's posterior to its prior, averaged over the data.

        KL_u = E_x KL(q(z_u | x) ‖ p(z_u))
             = E_x [log(σ_p,u / σ_q,u(x)) + (σ_q,u(x)² + (μ_q,u(x) − μ_p,u)²) / (2 σ_p,u²) − 1/2]

    in closed form, for a factorized Gaussian q(z | x) = N(μ_q(x), diag(σ_q(x)²)) and prior
    p(z) = N(μ_p, diag(σ_p²)), so Σ_u KL_u = E_x KL(q(z | x) ‖ p(z)), the rate. A dimension with
    KL_u ≈ 0 has collapsed to the prior (the "posterior collapse" of Bowman et al. 2016).

    Args:
      amortized: the `AmortizedModel`; its q(z | x) and p(z) must be `distrax.MultivariateNormalDiag`.
      params: its parameters, {"encoder": φ, "decoder": θ}.
      data: the datapoints, shape (N, D).

    Returns:
      KL_u, shape (d,).

    Raises:
      ArgumentTypeError: if q(z | x) or p(z) is not a `distrax.MultivariateNormalDiag`.
    """
    data = _check_arguments(amortized, data)
    prior = amortized.model.prior(params)
    prior_name = f"p(z) = {type(prior).__name__}"
    prior_marginals = _diagonal_gaussian(prior, "the prior p(z)", "q(z | x)")

    def kl_of(x):
        q = amortized.encode(params, x)
        return _diagonal_gaussian(q, "q(z | x)", prior_name).kl_divergence(prior_marginals)

    return jnp.mean(jax.vmap(kl_of)(data), axis=0)


def rate_distortion(
    key: Array, amortized: AmortizedModel, params: Params, data: Array, num_samples: int = 1
) -> RateDistortion:
    """Rate, distortion and ELBO of the data (Alemi et al. 2018, "Fixing a Broken ELBO").

        R = E_x KL(q(z | x) ‖ p(z))   ≈ (1/N) Σ_i (1/K) Σ_k [log q(z_ik | x_i) − log p(z_ik)]
        D = −E_x E_q[log p(x | z)]     ≈ −(1/N) Σ_i (1/K) Σ_k log p(x_i | z_ik)
        ELBO = −(R + D),                  z_ik ~ q(z | x_i)

    Both terms use the same draws z_ik, made with the keys fold_in(fold_in(key, i), k), so the
    ELBO is the mean over i of `lvmjax.elbo(fold_in(key, i), ...)` with K samples. log q(z_ik | x_i)
    comes from `sample_and_log_prob`, so any q works, an IAF posterior (which has no log-density of
    an arbitrary z) included. Fixed ELBOs trade R against D: a posterior that has collapsed to the
    prior has R = 0.

    Args:
      key: PRNG key.
      amortized: the `AmortizedModel`.
      params: its parameters, {"encoder": φ, "decoder": θ}.
      data: the datapoints, shape (N, D).
      num_samples: K, a static int >= 1: draws per datapoint.

    Returns:
      A `RateDistortion`.
    """
    num_samples = _validation.check_num_samples(num_samples)
    data = _check_arguments(amortized, data)
    prior = amortized.model.prior(params)

    def rate_and_distortion(key_i, x):
        latents, log_q = _sample_latents(key_i, amortized.encode(params, x), num_samples)
        log_prior = jax.vmap(prior.log_prob)(latents)
        log_lik = jax.vmap(lambda z: log_likelihood(amortized.model, params, x, z))(latents)
        return jnp.mean(log_q - log_prior), -jnp.mean(log_lik)

    rates, distortions = jax.vmap(rate_and_distortion)(_datapoint_keys(key, data.shape[0]), data)
    rate, distortion = jnp.mean(rates), jnp.mean(distortions)
    return RateDistortion(rate, distortion, -(rate + distortion))


def mutual_information(
    key: Array, amortized: AmortizedModel, params: Params, data: Array, num_samples: int = 1
) -> MutualInformation:
    """The mutual information between x and z under q(x, z) = p_data(x) q(z | x).

        I(x; z) = E_x E_{q(z|x)}[log q(z | x) − log q(z)],   q(z) = (1/N) Σ_j q(z | x_j)
                ≈ (1/(N K)) Σ_i Σ_k [log q(z_ik | x_i) − logsumexp_j log q(z_ik | x_j) + log N]

    with z_ik ~ q(z | x_i) drawn with the keys fold_in(fold_in(key, i), k): the estimator of
    Hoffman & Johnson (2016, "ELBO surgery") and He et al. (2019, "Lagging Inference Networks and
    Posterior Collapse"). Each term is at most log N (the sum over j includes j = i), so the
    estimate never exceeds log N, reached when the N posteriors do not overlap; it is 0 when they
    are all the same. It needs log q(z | x_j) at latents drawn for other datapoints, the
    (N·K, N) matrix of log q(z_ik | x_j), O(N² K) work and memory: fine for N up to a few thousand.
    A q without the log-density of an arbitrary z (an IAF posterior) raises the error of its
    `log_prob`.

    Args:
      key: PRNG key.
      amortized: the `AmortizedModel`.
      params: its parameters, {"encoder": φ, "decoder": θ}.
      data: the datapoints, shape (N, D).
      num_samples: K, a static int >= 1: draws per datapoint.

    Returns:
      A `MutualInformation`.
    """
    num_samples = _validation.check_num_samples(num_samples)
    data = _check_arguments(amortized, data)
    num_data = data.shape[0]

    def draw(key_i, x):
        return _sample_latents(key_i, amortized.encode(params, x), num_samples)[0]

    latents = jax.vmap(draw)(_datapoint_keys(key, num_data), data)  # (N, K, d)
    latents = latents.reshape(num_data * num_samples, -1)  # row i·K + k is z_ik

    def log_q_given(x_j):
        return jax.vmap(amortized.encode(params, x_j).log_prob)(latents)

    log_q = jax.vmap(log_q_given, out_axes=1)(data)  # (N·K, N): log q(z_ik | x_j)
    own = jnp.repeat(jnp.arange(num_data), num_samples)  # the datapoint i each row was drawn for
    # log q(z_ik | x_i) from the same matrix as the aggregate, so that every term is at most log N.
    log_own = jnp.take_along_axis(log_q, own[:, None], axis=1)[:, 0]
    # log q(z_ik | x_i) − log q(z_ik) = log N − (logsumexp_j log q(z_ik | x_j) − log q(z_ik | x_i)), whose
    # bracket is ≥ 0 in floating point too (logsumexp is at least the largest term): the estimate is ≤ log N.
    upper_bound = jnp.asarray(math.log(num_data), log_q.dtype)
    estimate = upper_bound - jnp.mean(logsumexp(log_q, axis=1) - log_own)
    return MutualInformation(estimate, upper_bound)

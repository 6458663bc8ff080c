"""The mixture of Bernoullis as a latent variable model, fitted by MAP-EM.

    z ~ Categorical(π),    x | z = k ~ Π_d Bernoulli(x_d; μ_kd),    π = softmax(logits),  μ = sigmoid(probs_logits)

The latent is one of K components, so the marginal and the posterior are
finite sums (seed text, §2.2, with Bernoulli instead of Gaussian components):

    p(x; θ)          = Σ_k π_k Π_d μ_kd^x_d (1 - μ_kd)^(1 - x_d)
    p(z = k | x; θ)  = π_k p(x | z = k; θ) / p(x; θ)     (the responsibilities r_k)

`fit_em` finds θ by EM with a Beta(α, β) prior on every μ_kd (Bishop 2006,
§9.3.3); with α, β > 1 it keeps every fitted probability strictly between 0 and 1.
The mixture's structure (prior, marginal, posterior) and the k-means++ seeding are
those of every mixture (`lvmjax.models._mixture`); this module holds the Bernoulli
components and the E- and M-steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import betaln

from lvmjax import _validation
from lvmjax.errors import ArgumentError
from lvmjax.model import LatentVariableModel
from lvmjax.models import _mixture
from lvmjax.models._em import EMInfo, best_restart, run_em
from lvmjax.types import Array

__all__ = [
    "Params",
    "bic",
    "components",
    "e_step",
    "fit_em",
    "initial_params",
    "likelihood",
    "log_marginal",
    "log_parameter_prior",
    "m_step",
    "marginal",
    "model",
    "num_free_parameters",
    "posterior",
    "prior",
]

_MODEL_NAME = "the Bernoulli mixture"  # as error messages name it


class Params(NamedTuple):
    """θ of a K-component mixture of D-dimensional Bernoullis."""

    logits: Array  # shape=(K,): log π_k up to a constant
    probs_logits: Array  # shape=(K, D): logit μ_kd = log μ_kd - log(1 - μ_kd)


def prior(params: Params) -> distrax.Distribution:
    """p(z) = Categorical(softmax(logits))."""
    return _mixture.prior(params.logits)


def _bernoullis(probs_logits: Array) -> distrax.Distribution:
    # Float samples: distrax's Bernoulli.log_prob of integer samples needs the
    # standard dtype promotion, which lvmjax's tests make strict.
    return distrax.Independent(distrax.Bernoulli(logits=probs_logits, dtype=probs_logits.dtype), 1)


def likelihood(params: Params, z: Array) -> distrax.Distribution:
    """p(x | z = k; θ) = Π_d Bernoulli(x_d; μ_kd)."""
    return _bernoullis(params.probs_logits[z])


model = LatentVariableModel(prior=prior, likelihood=likelihood)


def components(params: Params) -> distrax.Distribution:
    """The K products of Bernoullis Π_d Bernoulli(μ_kd) as one distribution with batch_shape (K,)."""
    return _bernoullis(params.probs_logits)


def marginal(params: Params) -> distrax.Distribution:
    """p(x; θ) = Σ_k π_k Π_d Bernoulli(x_d; μ_kd)."""
    return _mixture.marginal(params.logits, components(params))


def _check_binary(x: Array) -> None:
    """Every x_d, where concrete, is 0 or 1.

    A Bernoulli's log-probability extends to any x, x log μ + (1 - x) log(1 - μ),
    but for x outside {0, 1} that is no probability: refused rather than returned.
    """
    _validation.check_binary(x, "x")


def log_marginal(params: Params, x: Array) -> Array:
    """Exact log p(x; θ) = log Σ_k π_k Π_d Bernoulli(x_d; μ_kd) of one binary datapoint x, shape (D,)."""
    return _mixture.log_marginal(params.logits, components(params), x, _MODEL_NAME, _check_binary)


def posterior(params: Params, x: Array) -> distrax.Distribution:
    """Exact p(z = k | x; θ) = π_k p(x | z = k; θ) / p(x; θ): a Categorical whose probabilities are the
    responsibilities."""
    return _mixture.posterior(params.logits, components(params), x, _MODEL_NAME, _check_binary)


def e_step(params: Params, data: Array) -> tuple[Array, Array]:
    """The E-step: the log-responsibilities of every datapoint, and the mean log-likelihood.

        log p(x_i, z = k; θ) = log π_k + Σ_d x_id log μ_kd + (1 - x_id) log(1 - μ_kd)
        log r_ik             = log p(x_i, z = k; θ) - log Σ_k' p(x_i, z = k'; θ)

    All in log space, as two matrix products over the data, so no μ_kd near 0
    or 1 underflows.

    Args:
      params: θ, with K components over D pixels.
      data: binary datapoints x_1 … x_N, shape (N, D), in the dtype of `params`.

    Returns:
      (log r, shape (N, K); (1/N) Σ_i log p(x_i; θ), a scalar).
    """
    log_probs = jax.nn.log_sigmoid(params.probs_logits)  # log μ_kd
    log_complements = jax.nn.log_sigmoid(-params.probs_logits)  # log(1 - μ_kd)
    log_joint = jax.nn.log_softmax(params.logits) + data @ log_probs.T + (1 - data) @ log_complements.T
    log_marginals = jax.nn.logsumexp(log_joint, axis=1, keepdims=True)
    return log_joint - log_marginals, jnp.mean(log_marginals)


def m_step(data: Array, log_responsibilities: Array, alpha: float = 2.0, beta: float = 2.0) -> Params:
    """The MAP M-step with a Beta(α, β) prior on every μ_kd and none on π.

        N_k  = Σ_i r_ik,    π_k = N_k / N
        μ_kd = (Σ_i r_ik x_id + α - 1) / (N_k + α + β - 2)

    the mode of the Beta posterior of μ_kd: Bishop's (2006, §9.3.3) M-step with
    the prior's pseudo-counts. α = β = 2 is add-one (Laplace) smoothing, so no μ_kd
    is 0 or 1 even where a pixel is always 0; α = β = 1 is maximum likelihood.
    N_k gets 10 machine epsilons, as in scikit-learn, so an empty component keeps
    a finite log π_k.

    Args:
      data: binary datapoints, shape (N, D).
      log_responsibilities: log r_ik, shape (N, K), from `e_step`.
      alpha: α >= 1 of the Beta prior.
      beta: β >= 1 of the Beta prior.

    Returns:
      θ_{t+1}, with `logits` = log π_k.
    """
    responsibilities = jnp.exp(log_responsibilities)
    tiny = 10 * jnp.finfo(data.dtype).eps
    counts = responsibilities.sum(axis=0) + tiny  # N_k
    # The pseudo-counts of 1s and 0s: μ = ones / (ones + zeros). The logit is
    # log ones - log zeros, never μ itself, which would round to 1 in float32.
    # The floor only acts at α = 1 or β = 1 on a pixel that is constant in a component.
    ones = responsibilities.T @ data + (alpha - 1)
    zeros = responsibilities.T @ (1 - data) + (beta - 1)
    probs_logits = jnp.log(jnp.maximum(ones, tiny)) - jnp.log(jnp.maximum(zeros, tiny))
    return Params(logits=jnp.log(counts / data.shape[0]), probs_logits=probs_logits)


def log_parameter_prior(params: Params, alpha: float = 2.0, beta: float = 2.0) -> Array:
    """log p(θ) = Σ_kd log Beta(μ_kd; α, β), the prior of MAP-EM (flat on π).

        log Beta(μ; α, β) = (α - 1) log μ + (β - 1) log(1 - μ) - log B(α, β)

    A density over μ, not over its logit: the prior whose mode `m_step` finds.
    """
    log_probs = jax.nn.log_sigmoid(params.probs_logits)
    log_complements = jax.nn.log_sigmoid(-params.probs_logits)
    log_normalizer = jnp.asarray(betaln(alpha, beta), params.probs_logits.dtype)
    return jnp.sum((alpha - 1) * log_probs + (beta - 1) * log_complements) - params.probs_logits.size * log_normalizer


def initial_params(key: Array, data: Array, num_components: int, alpha: float = 2.0, beta: float = 2.0) -> Params:
    """θ_0: `m_step` on hard assignments of every datapoint to its nearest k-means++ centre.

    On binary data the squared Euclidean distance of `_mixture.kmeans_plus_plus`
    is the Hamming distance, so the centres are K datapoints spread out in Hamming
    distance (Arthur & Vassilvitskii 2007).

    Args:
      key: PRNG key for the seeding.
      data: binary datapoints, shape (N, D).
      num_components: K.
      alpha: α of the Beta prior, for the M-step.
      beta: β of the Beta prior, for the M-step.

    Returns:
      θ_0.
    """
    data = jnp.asarray(data)
    centres = _mixture.kmeans_plus_plus(key, data, num_components)
    # |x - c|_1 = Σ x + Σ c - 2 x·c for binary x and c: one matrix product.
    distances = data.sum(axis=1, keepdims=True) + centres.sum(axis=1) - 2 * data @ centres.T
    assignments = jax.nn.one_hot(jnp.argmin(distances, axis=1), num_components, dtype=data.dtype)
    return m_step(data, jnp.log(assignments), alpha, beta)


def fit_em(
    key: Array,
    data: Array,
    num_components: int,
    max_iter: int = 100,
    tol: float = 1e-4,
    alpha: float = 2.0,
    beta: float = 2.0,
    n_init: int = 1,
) -> tuple[Params, EMInfo]:
    """Fits a mixture of Bernoullis by MAP-EM (Bishop 2006, §9.3.3), from `n_init` starts in parallel.

    Each restart starts from `initial_params` (k-means++ centres, hard
    assignments, one M-step), then iterates `e_step` and `m_step` inside
    `lax.while_loop`. EM never decreases the MAP objective

        (1/N) [Σ_i log p(x_i; θ) + log p(θ)],    log p(θ) = Σ_kd log Beta(μ_kd; α, β)

    which is what `EMInfo.objective` records at each iterate θ_t; a restart stops
    once it changes by less than `tol`, or after `max_iter` iterations. The
    `n_init` restarts, from the keys `jax.random.split(key, n_init)`, run at once
    under `jax.vmap`; the one with the highest MAP objective at its final θ is
    returned.

    Args:
      key: PRNG key for the k-means++ seeding.
      data: binary datapoints x_1 … x_N, shape (N, D), values 0 and 1 of any
        dtype; integer and boolean data become the default float dtype.
      num_components: K, between 1 and N.
      max_iter: the most EM iterations per restart.
      tol: stop once the objective per datapoint changes by less than this.
      alpha: α >= 1 of the Beta(α, β) prior on every μ_kd.
      beta: β >= 1 of the Beta(α, β) prior on every μ_kd.
      n_init: restarts.

    Returns:
      (θ of the best restart, its `EMInfo`).

    Raises:
      ValueError: if `data` is not a non-empty 2-D array of finite 0s and 1s
        (`lvmjax.errors.DataError` for values other than 0 and 1), or
        `num_components`, `alpha`, `beta`, `max_iter` or `n_init` is out of range.
    """
    data = _validation.check_data_matrix(data)
    if not isinstance(data, jax.core.Tracer):  # values are only known outside jit
        _validation.check_binary(data, "data")
    _validation.check_num_components(num_components, data.shape[0])
    max_iter = _validation.check_num_samples(max_iter, "max_iter")
    n_init = _validation.check_num_samples(n_init, "n_init")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not value >= 1:
            raise ArgumentError(
                f"{name} must be at least 1, got {value}; below 1 the Beta(alpha, beta) prior's density "
                "is unbounded at 0 or 1, and so is the MAP objective."
            )
    return _fit_em(key, data, num_components, max_iter, tol, alpha, beta, n_init)


@functools.partial(jax.jit, static_argnames=("num_components", "max_iter", "n_init"))
def _fit_em(key, data, num_components, max_iter, tol, alpha, beta, n_init):
    def map_objective(params, mean_log_likelihood):
        return mean_log_likelihood + log_parameter_prior(params, alpha, beta) / data.shape[0]

    def step(params):
        log_responsibilities, mean_log_likelihood = e_step(params, data)
        return m_step(data, log_responsibilities, alpha, beta), map_objective(params, mean_log_likelihood)

    def restart(key):
        params, info = run_em(step, initial_params(key, data, num_components, alpha, beta), max_iter, tol)
        return params, info, map_objective(params, e_step(params, data)[1])

    params, info, final = jax.vmap(restart)(jax.random.split(key, n_init))
    return best_restart(final, (params, info))


def num_free_parameters(num_components: int, data_dim: int) -> int:
    """Free parameters of θ: K − 1 mixing weights and K·D pixel probabilities."""
    return num_components - 1 + num_components * data_dim


def bic(params: Params, data: Array) -> Array:
    """The Bayesian information criterion, -2 Σ_i log p(x_i; θ) + (K − 1 + K·D) log N (lower is better).

    For the MAP θ of `fit_em` this is the likelihood's BIC at that θ; the Beta prior is not counted.
    """
    num_data = data.shape[0]
    num_components, data_dim = params.probs_logits.shape
    total = num_data * e_step(params, data)[1]
    return -2 * total + num_free_parameters(num_components, data_dim) * jnp.log(num_data)

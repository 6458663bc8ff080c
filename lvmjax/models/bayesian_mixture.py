"""The variational Bayesian Gaussian mixture: coordinate-ascent VI for π, μ_k, Λ_k and z (Bishop 2006, §10.2).

The mixture of `gaussian_mixture` with a prior on its parameters, so that a fit is a posterior
over them and surplus components are switched off by the data (Bishop 2006, §10.2.4):

    π ~ Dir(α_0 1_K)                                                   ("dirichlet"), or
    π_k = v_k Π_{j<k} (1 - v_j),   v_k ~ Beta(1, γ)                    ("dirichlet-process", the
                                                                        stick-breaking prior, Blei & Jordan 2006)
    Λ_k ~ W(W_0, ν_0),   μ_k | Λ_k ~ N(m_0, (β_0 Λ_k)⁻¹),   z_n ~ Categorical(π),   x_n | z_n = k ~ N(μ_k, Λ_k⁻¹)

The mean-field posterior q(z) q(π or v) Π_k q(μ_k, Λ_k) is found by coordinate ascent on the
ELBO, each factor in closed form given the others (Bishop 10.46-10.63):

    log r_nk = E[log π_k] + ½ E[log |Λ_k|] - (D/2) log 2π - ½ (D / β_k + (x_n - m_k)ᵀ E[Λ_k] (x_n - m_k)) + const
    N_k = Σ_n r_nk,   x̄_k = Σ_n r_nk x_n / N_k,   S_k = Σ_n r_nk (x_n - x̄_k)(x_n - x̄_k)ᵀ / N_k + reg_covar · I
    α_k = α_0 + N_k,   or   a_k = 1 + N_k,  b_k = γ + Σ_{j>k} N_j
    β_k = β_0 + N_k,   m_k = (β_0 m_0 + N_k x̄_k) / β_k,   ν_k = ν_0 + N_k
    W_k⁻¹ = W_0⁻¹ + N_k S_k + (β_0 N_k / β_k)(x̄_k - m_0)(x̄_k - m_0)ᵀ

The parametrization, the defaults of the prior and the updates (reg_covar included) are
scikit-learn's `BayesianGaussianMixture`, so that its fitted attributes read into a `Posterior`
number for number. The stick-breaking prior is truncated as there: components beyond the K-th
keep their prior and no datapoint, so the ELBO below is a bound on log p(x_1..N) of the infinite
mixture. The objective of the iteration is the exact ELBO, with every constant:

    L(q) = Σ_n log Σ_k exp(E[log π_k] + E[log N(x_n; μ_k, Λ_k⁻¹)]) - KL(q(π) ‖ p(π)) - Σ_k KL(q(μ_k, Λ_k) ‖ p(μ_k, Λ_k))
         <= log p(x_1, ..., x_N)

(the first term is what the E-step's optimal q(z) leaves of E[log p(x, z | π, μ, Λ)] - E[log q(z)]),
where scikit-learn's `lower_bound_` drops the terms it can. The posterior predictive density of a
new point is a mixture of Student-t's (Bishop 10.81).

"diag" and "spherical" covariances have Gamma priors on the precisions (one per dimension, or
one for all D), with the same updates of ν_k and W_k⁻¹ as scikit-learn; their E[log |Λ_k|] is the
Gamma's, D ψ(ν_k / 2) + ... for "diag", where scikit-learn uses the full Wishart's
Σ_i ψ((ν_k - i) / 2) + ..., so the responsibilities there differ from scikit-learn's by O(D² / ν_k).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln, multigammaln

from lvmjax import _validation
from lvmjax.errors import ArgumentError
from lvmjax.models import _mixture, gaussian_mixture
from lvmjax.models._em import EMInfo, best_restart, run_em
from lvmjax.types import Array

__all__ = [
    "COVARIANCE_TYPES",
    "WEIGHT_PRIORS",
    "Posterior",
    "Prior",
    "default_prior",
    "e_step",
    "effective_components",
    "expected_log_weights",
    "expected_weights",
    "fit_vb",
    "initial_posterior",
    "kl_divergence",
    "log_predictive",
    "m_step",
    "responsibilities",
]

_MODEL_NAME = "the Bayesian Gaussian mixture"  # as error messages name it

COVARIANCE_TYPES = gaussian_mixture.COVARIANCE_TYPES
WEIGHT_PRIORS = ("dirichlet-process", "dirichlet")


class Prior(NamedTuple):
    """The hyperparameters of p(π or v) Π_k p(μ_k, Λ_k) (scikit-learn's `*_prior_` attributes)."""

    weight_concentration: Array  # shape=(): γ of the sticks Beta(1, γ), or α_0 of Dir(α_0 1_K)
    mean: Array  # shape=(D,): m_0
    mean_precision: Array  # shape=(): β_0 > 0
    degrees_of_freedom: Array  # shape=(): ν_0 > D - 1
    covariance: Array  # shape=(D, D) ("full"), (D,) ("diag") or () ("spherical"): W_0⁻¹


class Posterior(NamedTuple):
    """The variational parameters of q(π or v) Π_k q(μ_k, Λ_k), q(μ_k, Λ_k) = N(μ_k; m_k, (β_k Λ_k)⁻¹) W(Λ_k; W_k, ν_k).

    The fields are scikit-learn's fitted attributes of the same names; the shapes of
    `weight_concentration` and `covariances` say which weight prior and covariance type it is.
    """

    weight_concentration: Array  # shape=(2, K): (a_k, b_k) of q(v_k) = Beta(a_k, b_k), or (K,): α_k of q(π) = Dir(α)
    means: Array  # shape=(K, D): m_k
    mean_precision: Array  # shape=(K,): β_k
    degrees_of_freedom: Array  # shape=(K,): ν_k
    covariances: Array  # shape=(K, D, D), (K, D) (diagonals) or (K,): E[Λ_k]⁻¹ = W_k⁻¹ / ν_k


def _covariance_type(covariances: Array) -> str:
    """The covariance type of `Posterior.covariances`, from its shape."""
    return {3: "full", 2: "diag", 1: "spherical"}[covariances.ndim]


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ArgumentError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}.")


def _check_weight_prior(weight_prior: str) -> None:
    if weight_prior not in WEIGHT_PRIORS:
        raise ArgumentError(f"weight_prior must be one of {', '.join(WEIGHT_PRIORS)}, got {weight_prior!r}.")


def default_prior(data: Array, num_components: int, covariance_type: str = "full") -> Prior:
    """scikit-learn's default hyperparameters for data (N, D), N >= 2:

    γ = α_0 = 1 / K,   m_0 = x̄,   β_0 = 1,   ν_0 = D,   W_0⁻¹ = the data's covariance (ddof 1; its
    diagonal for "diag", the mean of that for "spherical").
    """
    data = _validation.check_data_matrix(data, min_rows=2)
    _check_covariance_type(covariance_type)
    num_data, data_dim = data.shape
    num_components = _validation.check_num_components(num_components, num_data)
    mean = jnp.mean(data, axis=0)
    centred = data - mean
    if covariance_type == "full":
        covariance = centred.T @ centred / (num_data - 1)
    else:
        covariance = jnp.sum(centred**2, axis=0) / (num_data - 1)
        if covariance_type == "spherical":
            covariance = jnp.mean(covariance)
    dtype = data.dtype
    return Prior(
        jnp.asarray(1 / num_components, dtype), mean, jnp.ones((), dtype), jnp.asarray(data_dim, dtype), covariance
    )


def _check_prior(prior: Prior, data_dim: int, covariance_type: str, dtype: jnp.dtype) -> Prior:
    """`prior` in `dtype`, with the shapes of D dimensions and `covariance_type`, and valid values where concrete."""
    if not isinstance(prior, Prior):
        raise ArgumentError(f"prior must be a bayesian_mixture.Prior, got {type(prior).__name__}.")
    prior = Prior(*(jnp.asarray(field, dtype) for field in prior))
    covariance_shape = {"full": (data_dim, data_dim), "diag": (data_dim,), "spherical": ()}[covariance_type]
    for name, value, shape in zip(Prior._fields, prior, ((), (data_dim,), (), (), covariance_shape), strict=True):
        if value.shape != shape:
            raise ArgumentError(
                f"prior.{name} must have shape {shape} for D = {data_dim} and {covariance_type!r} covariances, "
                f"got {value.shape}."
            )
    _validation.check_finite(prior, "prior")
    if any(isinstance(field, jax.core.Tracer) for field in prior):  # values are checked where concrete
        return prior
    for name in ("weight_concentration", "mean_precision"):
        if not float(getattr(prior, name)) > 0:
            raise ArgumentError(f"prior.{name} must be positive, got {float(getattr(prior, name))}.")
    if not float(prior.degrees_of_freedom) > data_dim - 1:
        raise ArgumentError(
            f"prior.degrees_of_freedom must be greater than D - 1 = {data_dim - 1}, "
            f"got {float(prior.degrees_of_freedom)}."
        )
    if covariance_type == "full":
        symmetric = bool(jnp.allclose(prior.covariance, prior.covariance.T))
        positive = bool(jnp.all(jnp.isfinite(jnp.linalg.cholesky(prior.covariance))))
    else:
        symmetric, positive = True, bool(jnp.all(prior.covariance > 0))
    if not (symmetric and positive):
        raise ArgumentError(
            "prior.covariance (W_0⁻¹) must be symmetric positive definite (positive, for diag and spherical); "
            "by default it is the data's covariance, singular when a column is constant or D >= N."
        )
    return prior


# --- Expectations under q ---------------------------------------------------------------


def expected_log_weights(posterior: Posterior) -> Array:
    """E_q[log π_k], shape (K,) (Bishop 10.66; Blei & Jordan 2006, §3):

    ψ(α_k) - ψ(Σ_j α_j)                                                       (Dirichlet)
    ψ(a_k) - ψ(a_k + b_k) + Σ_{j<k} (ψ(b_j) - ψ(a_j + b_j))                   (stick-breaking)
    """
    concentration = posterior.weight_concentration
    if concentration.ndim == 1:
        return digamma(concentration) - digamma(jnp.sum(concentration))
    first, second = concentration
    digamma_sum = digamma(first + second)
    log_rest = digamma(second) - digamma_sum  # E[log(1 - v_k)]
    earlier = jnp.concatenate([jnp.zeros(1, log_rest.dtype), jnp.cumsum(log_rest[:-1])])
    return digamma(first) - digamma_sum + earlier


def _log_expected_weights(posterior: Posterior) -> Array:
    """log E_q[π_k], renormalized over the K components (see `expected_weights`), shape (K,)."""
    concentration = posterior.weight_concentration
    if concentration.ndim == 1:
        return jnp.log(concentration) - jnp.log(jnp.sum(concentration))
    first, second = concentration
    log_total = jnp.log(first + second)
    log_rest = jnp.log(second) - log_total  # log E[1 - v_k]
    earlier = jnp.concatenate([jnp.zeros(1, log_rest.dtype), jnp.cumsum(log_rest[:-1])])
    return jax.nn.log_softmax(jnp.log(first) - log_total + earlier)


def expected_weights(posterior: Posterior) -> Array:
    """E_q[π_k], shape (K,): α_k / Σ_j α_j, or E[v_k] Π_{j<k} (1 - E[v_j]) with E[v_k] = a_k / (a_k + b_k).

    Under the truncated stick-breaking prior the K weights leave E[Π_k (1 - v_k)] to the
    components beyond the K-th; as scikit-learn's `weights_`, they are renormalized to sum to 1.
    """
    return jnp.exp(_log_expected_weights(posterior))


def effective_components(posterior: Posterior, threshold: float = 0.01) -> Array:
    """How many components have an expected weight E_q[π_k] above `threshold`: shape (), int."""
    return jnp.sum(expected_weights(posterior) > threshold)


def _cholesky_and_log_det(covariances: Array) -> tuple[Array, Array]:
    """(L_k with L_k L_kᵀ = C_k, as (K, D, D); log |C_k|, (K,)) of `Posterior.covariances` C_k of any type."""
    covariance_type = _covariance_type(covariances)
    if covariance_type == "full":
        scale_tril = jnp.linalg.cholesky(covariances)
        return scale_tril, 2 * jnp.sum(jnp.log(jnp.diagonal(scale_tril, axis1=1, axis2=2)), axis=1)
    return jax.vmap(jnp.diag)(jnp.sqrt(covariances)), jnp.sum(jnp.log(covariances), axis=1)


def _spherical_as_diag(covariances: Array, data_dim: int) -> Array:
    """Spherical C_k (K,) as diagonals (K, D); other types unchanged."""
    if covariances.ndim == 1:
        return jnp.broadcast_to(covariances[:, None], (covariances.shape[0], data_dim))
    return covariances


def _expected_log_det_precision(posterior: Posterior, log_det_covariances: Array) -> Array:
    """E_q[log |Λ_k|], shape (K,), from log |C_k| (Bishop 10.65; for the Gammas, E[log λ] = ψ(a) - log b):

    Σ_{i=0}^{D-1} ψ((ν_k - i) / 2) + D log 2 - D log ν_k - log |C_k|   ("full")
    D ψ(ν_k / 2) + D log 2 - D log ν_k - log |C_k|           ("diag": λ_kd ~ Gamma(ν_k/2, ν_k C_kd/2))
    D ψ(D ν_k / 2) + D log 2 - D log(D ν_k) - log |C_k|      ("spherical": λ_k ~ Gamma(D ν_k/2, D ν_k C_k/2))
    """
    dof = posterior.degrees_of_freedom
    data_dim = posterior.means.shape[1]
    covariance_type = _covariance_type(posterior.covariances)
    if covariance_type == "full":
        halves = 0.5 * (dof[:, None] - jnp.arange(data_dim, dtype=dof.dtype))
        digammas = jnp.sum(digamma(halves), axis=1)
        shape = dof
    else:
        shape = dof if covariance_type == "diag" else data_dim * dof  # 2 a_k: twice the Gamma's shape
        digammas = data_dim * digamma(0.5 * shape)
    return digammas + data_dim * (jnp.log(2.0) - jnp.log(shape)) - log_det_covariances


def _gaussian_params(posterior: Posterior) -> gaussian_mixture.Params:
    """The `gaussian_mixture.Params` whose weighted log-densities are the E-step's log ρ_nk up to one constant.

    log ρ_nk = E[log π_k] + E[log N(x_n; μ_k, Λ_k⁻¹)] = logits_k + log N(x_n; m_k, C_k), with

        logits_k = E[log π_k] + ½ (E[log |Λ_k|] + log |C_k|) - D / (2 β_k)

    so that `gaussian_mixture.e_step_columns` (which uses softmax(logits)) gives r_nk, and its
    log-likelihood plus logsumexp_k(logits_k) gives log Σ_k ρ_nk.
    """
    data_dim = posterior.means.shape[1]
    scale_tril, log_det = _cholesky_and_log_det(_spherical_as_diag(posterior.covariances, data_dim))
    logits = (
        expected_log_weights(posterior)
        + 0.5 * (_expected_log_det_precision(posterior, log_det) + log_det)
        - 0.5 * data_dim / posterior.mean_precision
    )
    return gaussian_mixture.Params(logits, posterior.means, scale_tril)


# --- The KL divergence of q from the prior ----------------------------------------------


def _wishart_kl(posterior: Posterior, prior: Prior, inverse_tril: Array, log_det: Array) -> Array:
    """KL(W(W_k, ν_k) ‖ W(W_0, ν_0)), shape (K,), from L_k⁻¹ and log |C_k|, with W_k = (ν_k C_k)⁻¹, C_k = L_k L_kᵀ
    (Penny 2001, "KL-divergences of Normal, Gamma, Dirichlet and Wishart densities"):

        -(ν_0/2) log |W_0⁻¹ W_k| + (ν_k/2)(tr(W_0⁻¹ W_k) - D)
            + log Γ_D(ν_0/2) - log Γ_D(ν_k/2) + ((ν_k - ν_0)/2) ψ_D(ν_k/2),   ψ_D(a) = Σ_{i=0}^{D-1} ψ(a - i/2)

    with log |W_0⁻¹ W_k| = log |W_0⁻¹| - D log ν_k - log |C_k| and ν_k tr(W_0⁻¹ W_k) = tr(W_0⁻¹ C_k⁻¹).
    """
    dof, prior_dof = posterior.degrees_of_freedom, prior.degrees_of_freedom
    data_dim = posterior.means.shape[1]
    prior_tril = jnp.linalg.cholesky(prior.covariance)
    prior_log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(prior_tril)))
    trace = jnp.sum((inverse_tril @ prior_tril) ** 2, axis=(1, 2))  # tr(C_k⁻¹ W_0⁻¹) = ‖L_k⁻¹ L_0‖²
    halves = 0.5 * (dof[:, None] - jnp.arange(data_dim, dtype=dof.dtype))
    return (
        -0.5 * prior_dof * (prior_log_det - data_dim * jnp.log(dof) - log_det)
        + 0.5 * (trace - dof * data_dim)
        + multigammaln(0.5 * prior_dof, data_dim)
        - multigammaln(0.5 * dof, data_dim)
        + 0.5 * (dof - prior_dof) * jnp.sum(digamma(halves), axis=1)
    )


def _gamma_kl(posterior: Posterior, prior: Prior) -> Array:
    """Σ_d KL(Gamma(a_k, b_kd) ‖ Gamma(a_0, b_0d)), shape (K,), of the "diag" and "spherical" precisions:
    a = ν/2, b_d = ν C_d / 2 (diag); a = D ν / 2, b = D ν C / 2 (spherical); the prior's with ν_0 and W_0⁻¹."""
    dof, covariances, prior_covariance = posterior.degrees_of_freedom, posterior.covariances, prior.covariance
    if covariances.ndim == 1:
        data_dim = posterior.means.shape[1]
        dof, prior_dof = data_dim * dof, data_dim * prior.degrees_of_freedom
        q = distrax.Gamma(0.5 * dof, 0.5 * dof * covariances)
        return q.kl_divergence(distrax.Gamma(0.5 * prior_dof * jnp.ones_like(dof), 0.5 * data_dim * prior_covariance))
    q = distrax.Gamma(0.5 * dof[:, None] * jnp.ones_like(covariances), 0.5 * dof[:, None] * covariances)
    p = distrax.Gamma(0.5 * prior.degrees_of_freedom * jnp.ones_like(covariances), 0.5 * prior_covariance)
    return jnp.sum(q.kl_divergence(p), axis=1)


def _weights_kl(posterior: Posterior, prior: Prior) -> Array:
    """KL(q(π) ‖ p(π)) = KL(Dir(α) ‖ Dir(α_0 1_K)), or Σ_k KL(Beta(a_k, b_k) ‖ Beta(1, γ)) for the sticks."""
    concentration = posterior.weight_concentration
    ones = jnp.ones(concentration.shape[-1], concentration.dtype)
    if concentration.ndim == 1 and len(concentration) == 1:  # π = 1 under both
        return jnp.zeros((), concentration.dtype)
    if concentration.ndim == 1:
        return distrax.Dirichlet(concentration).kl_divergence(distrax.Dirichlet(prior.weight_concentration * ones))
    sticks = distrax.Beta(concentration[0], concentration[1])
    return jnp.sum(sticks.kl_divergence(distrax.Beta(ones, prior.weight_concentration * ones)))


def kl_divergence(posterior: Posterior, prior: Prior) -> Array:
    """KL(q(π or v) Π_k q(μ_k, Λ_k) ‖ p(π or v) Π_k p(μ_k, Λ_k)), a scalar (Bishop 10.71-10.77 less 10.72's z terms).

    Each component's is KL(q(Λ_k) ‖ p(Λ_k)) plus the expected KL of the means given Λ_k:

        ½ [D (β_0/β_k - 1 - log(β_0/β_k)) + β_0 (m_k - m_0)ᵀ E[Λ_k] (m_k - m_0)]
    """
    data_dim = posterior.means.shape[1]
    covariances = _spherical_as_diag(posterior.covariances, data_dim)
    scale_tril, log_det = _cholesky_and_log_det(covariances)
    ratio = prior.mean_precision / posterior.mean_precision
    deviations = posterior.means - prior.mean
    if _covariance_type(posterior.covariances) == "full":
        # L_k⁻¹ by `gaussian_mixture`'s substitution loop: a BLAS triangular solve of these small
        # blocks takes ~1000 times longer on CPU.
        inverse_tril = gaussian_mixture.inverse_scale_tril(scale_tril)
        whitened = jnp.einsum("kij,kj->ki", inverse_tril, deviations)
        precisions_kl = _wishart_kl(posterior, prior, inverse_tril, log_det)
    else:
        whitened = deviations / jnp.sqrt(covariances)
        precisions_kl = _gamma_kl(posterior, prior)
    means_kl = 0.5 * (data_dim * (ratio - 1 - jnp.log(ratio)) + prior.mean_precision * jnp.sum(whitened**2, axis=1))
    return _weights_kl(posterior, prior) + jnp.sum(means_kl + precisions_kl)


# --- Coordinate ascent ------------------------------------------------------------------


def _e_step(posterior: Posterior, prior: Prior, data_t: Array) -> tuple[Array, Array]:
    """`e_step` on data_t = dataᵀ (D, N); the log responsibilities come as (K, N)."""
    params = _gaussian_params(posterior)
    diagonal = _covariance_type(posterior.covariances) != "full"
    log_responsibilities_t, log_normalizers = gaussian_mixture.e_step_columns(params, data_t, diagonal)
    num_data = data_t.shape[1]
    elbo = jnp.mean(log_normalizers) + jax.nn.logsumexp(params.logits) - kl_divergence(posterior, prior) / num_data
    return log_responsibilities_t, elbo


@jax.jit
def e_step(posterior: Posterior, prior: Prior, data: Array) -> tuple[Array, Array]:
    """The update of q(z): log r_nk, and the ELBO per datapoint at q(z) = r (see the module docstring).

        log r_nk = log ρ_nk - log Σ_j ρ_nj,   log ρ_nk = E[log π_k] + E[log N(x_n; μ_k, Λ_k⁻¹)]
        ELBO / N = (1/N) Σ_n log Σ_k ρ_nk - KL(q ‖ p) / N

    Args:
      posterior: q(π or v) and q(μ_k, Λ_k).
      prior: the hyperparameters.
      data: (N, D).

    Returns:
      (log responsibilities, shape (N, K); the ELBO divided by N, exact with every constant).
    """
    log_responsibilities_t, elbo = _e_step(posterior, prior, data.T)
    return log_responsibilities_t.T, elbo


def _m_step(
    data_t: Array, log_responsibilities_t: Array, prior: Prior, covariance_type: str, weight_prior: str, reg_covar
) -> Posterior:
    """`m_step` on data_t = dataᵀ (D, N) and log responsibilities (K, N)."""
    raw_counts, averages, scatters = gaussian_mixture.sufficient_statistics(
        data_t, log_responsibilities_t, covariance_type
    )
    counts = raw_counts + 10 * jnp.finfo(raw_counts.dtype).eps  # as scikit-learn, an empty component stays finite
    if weight_prior == "dirichlet":
        concentration = prior.weight_concentration + counts
    else:
        later = jnp.concatenate([jnp.cumsum(counts[::-1])[::-1][1:], jnp.zeros(1, counts.dtype)])  # Σ_{j>k} N_j
        concentration = jnp.stack([1 + counts, prior.weight_concentration + later])
    mean_precision = prior.mean_precision + counts
    means = (prior.mean_precision * prior.mean + counts[:, None] * averages) / mean_precision[:, None]
    dof = prior.degrees_of_freedom + counts
    deviations = averages - prior.mean
    shrunk = counts * prior.mean_precision / mean_precision  # N_k β_0 / β_k
    if covariance_type == "full":
        identity = jnp.eye(data_t.shape[0], dtype=data_t.dtype)
        inverse_scale = (
            prior.covariance
            + counts[:, None, None] * (scatters + reg_covar * identity)
            + shrunk[:, None, None] * deviations[:, :, None] * deviations[:, None, :]
        )
        covariances = inverse_scale / dof[:, None, None]
    elif covariance_type == "diag":
        inverse_scale = prior.covariance + counts[:, None] * (scatters + reg_covar) + shrunk[:, None] * deviations**2
        covariances = inverse_scale / dof[:, None]
    else:
        inverse_scale = (
            prior.covariance
            + counts * jnp.mean(scatters + reg_covar, axis=1)
            + shrunk * jnp.mean(deviations**2, axis=1)
        )
        covariances = inverse_scale / dof
    return Posterior(concentration, means, mean_precision, dof, covariances)


@functools.partial(jax.jit, static_argnames=("covariance_type", "weight_prior"))
def m_step(
    data: Array,
    log_responsibilities: Array,
    prior: Prior,
    covariance_type: str = "full",
    weight_prior: str = "dirichlet-process",
    reg_covar: float = 1e-6,
) -> Posterior:
    """The update of q(π or v) and every q(μ_k, Λ_k) given the responsibilities (Bishop 10.58-10.63).

        N_k = Σ_n r_nk + 10 ε,   α_k = α_0 + N_k   or   (a_k, b_k) = (1 + N_k, γ + Σ_{j>k} N_j)
        β_k = β_0 + N_k,   m_k = (β_0 m_0 + N_k x̄_k) / β_k,   ν_k = ν_0 + N_k
        C_k = [W_0⁻¹ + N_k (S_k + reg_covar · I) + (β_0 N_k / β_k)(x̄_k - m_0)(x̄_k - m_0)ᵀ] / ν_k

    with x̄_k and S_k the responsibility-weighted mean and covariance (`gaussian_mixture.m_step`'s);
    "diag" keeps the diagonals, "spherical" their means. This is scikit-learn's `_m_step`.

    Args:
      data: (N, D).
      log_responsibilities: (N, K).
      prior: the hyperparameters, of `covariance_type`'s shapes.
      covariance_type: "full", "diag" or "spherical".
      weight_prior: "dirichlet-process" or "dirichlet".
      reg_covar: added to the diagonal of every S_k.

    Returns:
      The new `Posterior`.
    """
    return _m_step(data.T, log_responsibilities.T, prior, covariance_type, weight_prior, reg_covar)


def initial_posterior(
    key: Array,
    data: Array,
    prior: Prior,
    num_components: int,
    covariance_type: str = "full",
    weight_prior: str = "dirichlet-process",
    reg_covar: float = 1e-6,
) -> Posterior:
    """q_0: the `m_step` on hard assignments of every datapoint to its nearest k-means++ centre."""
    centres = _mixture.kmeans_plus_plus(key, data, num_components)
    return m_step(data, _mixture.nearest_centre(centres, data), prior, covariance_type, weight_prior, reg_covar)


def fit_vb(
    key: Array,
    data: Array,
    num_components: int,
    covariance_type: str = "full",
    weight_prior: str = "dirichlet-process",
    prior: Prior | None = None,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init_responsibilities: Array | None = None,
) -> tuple[Posterior, EMInfo]:
    """Variational Bayes for a Gaussian mixture by coordinate ascent (Bishop 2006, §10.2), with parallel restarts.

    Each restart takes `m_step` on hard k-means++ assignments (or on `init_responsibilities`),
    then alternates `e_step` and `m_step` inside `lax.while_loop` (`_em.run_em`) until the ELBO
    per datapoint changes by less than `tol`, or `max_iter` times. The ELBO never decreases
    (but for the O(reg_covar) that `reg_covar` adds to each S_k). The `n_init` restarts run at
    once under `jax.vmap`; the one with the highest final ELBO is returned. This is
    scikit-learn's `BayesianGaussianMixture`, whose `tol` is on the change of its bound summed
    over the N datapoints: N times the `tol` here.

    Args:
      key: PRNG key for the k-means++ seeding.
      data: (N, D), finite.
      num_components: K, between 1 and N (the truncation, for the stick-breaking prior).
      covariance_type: "full", "diag" or "spherical".
      weight_prior: "dirichlet-process" (stick-breaking) or "dirichlet".
      prior: the hyperparameters; by default `default_prior` (scikit-learn's defaults).
      max_iter: the most iterations per restart.
      tol: convergence threshold on the change of the ELBO per datapoint.
      reg_covar: added to the diagonal of every weighted covariance S_k.
      n_init: restarts.
      init_responsibilities: (N, K) responsibilities r_nk >= 0 (rows summing to 1) for the first
        M-step of every restart, instead of k-means++.

    Returns:
      (the `Posterior` of the chosen restart, its `EMInfo`, whose `objective` is the exact ELBO
      per datapoint at each iterate).
    """
    data = _validation.check_data_matrix(data)
    num_data, data_dim = data.shape
    _check_covariance_type(covariance_type)
    _check_weight_prior(weight_prior)
    n_init, max_iter = gaussian_mixture.check_fit_options(
        num_data, num_components, covariance_type, reg_covar, n_init, max_iter
    )
    if prior is None:
        prior = default_prior(data, num_components, covariance_type)
    prior = _check_prior(prior, data_dim, covariance_type, data.dtype)
    init_log_responsibilities = None
    if init_responsibilities is not None:
        _validation.check_real_array(init_responsibilities, "init_responsibilities")
        if jnp.shape(init_responsibilities) != (num_data, num_components):
            raise ArgumentError(
                f"init_responsibilities must have shape (N, K) = {(num_data, num_components)}, "
                f"got {jnp.shape(init_responsibilities)}."
            )
        _validation.check_finite(init_responsibilities, "init_responsibilities")
        if not isinstance(init_responsibilities, jax.core.Tracer) and not bool(jnp.all(init_responsibilities >= 0)):
            raise ArgumentError("init_responsibilities must be non-negative.")
        init_log_responsibilities = jnp.log(jnp.asarray(init_responsibilities, data.dtype))
    return _fit_vb(
        key, data, prior, num_components, covariance_type, weight_prior, max_iter, tol, reg_covar, n_init,
        init_log_responsibilities,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "weight_prior", "max_iter", "n_init"))
def _fit_vb(
    key, data, prior, num_components, covariance_type, weight_prior, max_iter, tol, reg_covar, n_init, init_log_r
):
    data_t = data.T

    def update(log_responsibilities_t):
        return _m_step(data_t, log_responsibilities_t, prior, covariance_type, weight_prior, reg_covar)

    def step(posterior):
        log_responsibilities_t, elbo = _e_step(posterior, prior, data_t)
        return update(log_responsibilities_t), elbo

    def restart(key):
        start = (
            update(init_log_r.T)
            if init_log_r is not None
            else initial_posterior(key, data, prior, num_components, covariance_type, weight_prior, reg_covar)
        )
        return run_em(step, start, max_iter, tol)

    keys = jax.random.split(key, n_init)
    if n_init == 1:  # nothing to choose from
        return restart(keys[0])
    posterior, info = jax.vmap(restart)(keys)
    final = jax.vmap(lambda posterior: _e_step(posterior, prior, data_t)[1])(posterior)
    return best_restart(final, (posterior, info))


# --- Prediction -------------------------------------------------------------------------


def _check_datapoint(posterior: Posterior, x: Array) -> None:
    """x is one datapoint (D,) of real numbers, finite where concrete."""
    _validation.check_real_array(x, "x")
    shape, event_shape = tuple(jnp.shape(x)), posterior.means.shape[1:]
    if shape != event_shape:
        hint = " It looks like a batch; these functions take one datapoint: use jax.vmap over the batch."
        raise ArgumentError(
            f"x has shape {shape}, but {_MODEL_NAME} has event_shape {event_shape}."
            + (hint if shape[1:] == event_shape else "")
        )
    _validation.check_finite(x, "x")


def _log_student_t(squared_distance: Array, half_log_det: Array, dof: Array, data_dim: int) -> Array:
    """log St(x; m, Σ, ν) of D-dimensional Student-t's from δ² = (x - m)ᵀ Σ⁻¹ (x - m) and ½ log |Σ| (Bishop B.68):

    log Γ((ν + D)/2) - log Γ(ν/2) - (D/2) log(νπ) - ½ log |Σ| - ((ν + D)/2) log(1 + δ²/ν)
    """
    return (
        gammaln(0.5 * (dof + data_dim))
        - gammaln(0.5 * dof)
        - 0.5 * data_dim * jnp.log(dof * jnp.pi)
        - half_log_det
        - 0.5 * (dof + data_dim) * jnp.log1p(squared_distance / dof)
    )


def _component_log_predictives(posterior: Posterior, x: Array) -> Array:
    """log ∫ N(x; μ_k, Λ_k⁻¹) q(μ_k, Λ_k) dμ_k dΛ_k, shape (K,), a Student-t in each case (Bishop 10.81-10.82):

    St(x; m_k, (1 + β_k) ν_k / (β_k (ν_k + 1 - D)) C_k, ν_k + 1 - D)     ("full")
    Π_d St(x_d; m_kd, (1 + β_k) / β_k C_kd, ν_k)                       ("diag")
    St(x; m_k, (1 + β_k) / β_k C_k I, D ν_k)                           ("spherical")
    """
    means, beta, dof = posterior.means, posterior.mean_precision, posterior.degrees_of_freedom
    data_dim = means.shape[1]
    deviations = x - means  # (K, D)
    inflation = (1 + beta) / beta
    covariance_type = _covariance_type(posterior.covariances)
    if covariance_type == "full":
        student_dof = dof + 1 - data_dim
        factor = inflation * dof / student_dof  # Σ_k = factor_k C_k
        scale_tril, log_det = _cholesky_and_log_det(posterior.covariances)
        whitened = jnp.einsum("kij,kj->ki", gaussian_mixture.inverse_scale_tril(scale_tril), deviations)
        half_log_det = 0.5 * (log_det + data_dim * jnp.log(factor))
        return _log_student_t(jnp.sum(whitened**2, axis=1) / factor, half_log_det, student_dof, data_dim)
    if covariance_type == "diag":
        scales = inflation[:, None] * posterior.covariances
        log_densities = _log_student_t(deviations**2 / scales, 0.5 * jnp.log(scales), dof[:, None], 1)
        return jnp.sum(log_densities, axis=1)
    scales = inflation * posterior.covariances
    squared = jnp.sum(deviations**2, axis=1) / scales
    return _log_student_t(squared, 0.5 * data_dim * jnp.log(scales), data_dim * dof, data_dim)


def log_predictive(posterior: Posterior, x: Array) -> Array:
    """log p(x | x_1..N) ≈ log Σ_k E_q[π_k] St_k(x) of one datapoint x (D,): the posterior predictive (Bishop 10.81).

    A normalized density in x: the mixture of the components' Student-t's (see
    `_component_log_predictives`), weighted by `expected_weights`. Its mean over held-out points,
    `jnp.mean(jax.vmap(log_predictive, (None, 0))(posterior, test))`, is the held-out log-likelihood.
    """
    _check_datapoint(posterior, x)
    return jax.nn.logsumexp(_log_expected_weights(posterior) + _component_log_predictives(posterior, x))


def responsibilities(posterior: Posterior, x: Array) -> Array:
    """q(z = k) for one datapoint x (D,): r_k = ρ_k / Σ_j ρ_j with log ρ_k = E[log π_k] + E[log N(x; μ_k, Λ_k⁻¹)].

    Shape (K,); scikit-learn's `predict_proba` (its `predict` is the argmax).
    """
    _check_datapoint(posterior, x)
    params = _gaussian_params(posterior)
    return jax.nn.softmax(params.logits + gaussian_mixture.components(params).log_prob(x))

"""The linear-Gaussian latent variable model: factor analysis and probabilistic PCA.

    z ~ N(0, I_d),    x | z ~ N(W z + b, Ψ),    Ψ diagonal

With a diagonal Ψ this is factor analysis; with Ψ = σ² I it is probabilistic PCA
(Tipping & Bishop 1999). Everything is Gaussian, so the marginal and the
posterior are known in closed form (Bishop 2006, §12.2):

    p(x; θ)     = N(x; b, W Wᵀ + Ψ)
    p(z | x; θ) = N(z; M⁻¹ Wᵀ Ψ⁻¹ (x - b), M⁻¹),    M = I + Wᵀ Ψ⁻¹ W

and so is the ELBO of any Gaussian q(z) = N(m, S) (`exact_elbo`). These are the
ground truth against which lvmjax's estimators are tested.

θ is fitted to data by maximum likelihood, with b the data mean:
`fit_factor_analysis` by EM (Ghahramani & Hinton 1996), `fit_ppca` in closed
form and `fit_ppca_em` by EM (Tipping & Bishop 1999).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import _validation
from lvmjax.errors import ArgumentError
from lvmjax.model import LatentVariableModel
from lvmjax.models._em import EMInfo, run_em
from lvmjax.types import Array

__all__ = [
    "Params",
    "bic",
    "exact_elbo",
    "fit_factor_analysis",
    "fit_ppca",
    "fit_ppca_em",
    "likelihood",
    "log_likelihood_error_bound",
    "log_marginal",
    "marginal",
    "model",
    "num_free_parameters",
    "posterior",
    "prior",
]


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
    return distrax.MultivariateNormalDiag(jnp.zeros(latent_dim, dtype), jnp.ones(latent_dim, dtype))


def likelihood(params: Params, z: Array) -> distrax.Distribution:
    """p(x | z; θ) = N(W z + b, Ψ)."""
    return distrax.MultivariateNormalDiag(params.weight @ z + params.bias, jnp.sqrt(_noise_variance(params)))


model = LatentVariableModel(prior=prior, likelihood=likelihood)


def marginal(params: Params) -> distrax.Distribution:
    """p(x; θ) = N(b, W Wᵀ + Ψ)."""
    covariance = params.weight @ params.weight.T + jnp.diag(_noise_variance(params))
    return distrax.MultivariateNormalFullCovariance(params.bias, covariance)


def log_marginal(params: Params, x: Array) -> Array:
    """Exact log p(x; θ) = log N(x; b, W Wᵀ + Ψ) of one datapoint x, shape (D,).

    Computed by Bayes' rule at the posterior mean z* = E[z | x] = M⁻¹ Wᵀ Ψ⁻¹ (x − b):

        log p(x) = log p(x | z*) + log p(z*) − log p(z* | x),
        log p(z* | x) = −(d/2) log 2π + ½ log |M|,   M = I + Wᵀ Ψ⁻¹ W

    which never forms or factorizes the D × D covariance W Wᵀ + Ψ (O(D d²), not
    O(D³)) and sums terms without cancellation. The covariance is ill-conditioned
    when Ψ is small next to W Wᵀ: in float32 its Cholesky factor then loses digits
    (5% of log p(x) at Ψ = 10⁻⁶ I), while this form stays at rounding error.
    """
    _validation.check_event_shape(x, marginal(params), "x", "the linear-Gaussian model")
    weight_over_noise, cholesky = _posterior_precision_cholesky(params)
    z = jax.scipy.linalg.cho_solve((cholesky, True), weight_over_noise.T @ (x - params.bias))
    latent_dim = cholesky.shape[0]
    log_posterior_at_mean = -0.5 * latent_dim * jnp.log(2 * jnp.pi).astype(z.dtype) + jnp.sum(
        jnp.log(jnp.diagonal(cholesky))
    )
    return likelihood(params, z).log_prob(x) + prior(params).log_prob(z) - log_posterior_at_mean


def _posterior_precision_cholesky(params: Params) -> tuple[Array, Array]:
    """(Ψ⁻¹ W, shape (D, d); L, the lower Cholesky factor of M = I + Wᵀ Ψ⁻¹ W, shape (d, d))."""
    weight_over_noise = params.weight / _noise_variance(params)[:, None]  # Ψ⁻¹ W
    precision = jnp.eye(params.weight.shape[-1], dtype=params.weight.dtype)
    precision = precision + params.weight.T @ weight_over_noise
    return weight_over_noise, jnp.linalg.cholesky(precision)


def posterior(params: Params, x: Array) -> distrax.Distribution:
    """Exact p(z | x; θ) = N(M⁻¹ Wᵀ Ψ⁻¹ (x - b), M⁻¹), M = I + Wᵀ Ψ⁻¹ W, for one x of shape (D,)."""
    _validation.check_event_shape(x, marginal(params), "x", "the linear-Gaussian model")
    weight_over_noise, cholesky = _posterior_precision_cholesky(params)
    covariance = jax.scipy.linalg.cho_solve((cholesky, True), jnp.eye(cholesky.shape[0], dtype=cholesky.dtype))
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
    expected_log_likelihood = likelihood(params, mean).log_prob(x) - 0.5 * jnp.sum(
        (params.weight @ covariance * params.weight).sum(-1) / noise_variance
    )
    return expected_log_likelihood - q.kl_divergence(prior(params))


# --- Fitting by maximum likelihood ------------------------------------------------------


def _check_data(data: Array, latent_dim: int) -> tuple[Array, int]:
    """`data` as a float (N, D) array with N >= 2, and 1 <= latent_dim < D, or a ValueError."""
    data = _validation.check_data_matrix(data, min_rows=2)
    latent_dim = _validation.check_num_samples(latent_dim, "latent_dim")
    if latent_dim >= data.shape[1]:
        raise ArgumentError(f"latent_dim={latent_dim} must be below the data dimension D={data.shape[1]}.")
    return data, latent_dim


def _mean_and_covariance(data: Array) -> tuple[Array, Array]:
    """x̄, shape (D,), and S = (1/N) Σ_i (x_i - x̄)(x_i - x̄)ᵀ, shape (D, D): the ML estimates."""
    mean = jnp.mean(data, axis=0)
    centred = data - mean
    return mean, centred.T @ centred / data.shape[0]


def _mean_log_marginal(params: Params, data_covariance: Array) -> Array:
    """(1/N) Σ_i log N(x_i; b, C), C = W Wᵀ + Ψ, of all datapoints at once, for b = x̄.

        (1/N) Σ_i log p(x_i; θ) = -½ [D log 2π + log|C| + tr(C⁻¹ S)]

    with log|C| = log|M| + Σ_d log ψ_d (the matrix determinant lemma) and
    C⁻¹ = Ψ⁻¹ - Ψ⁻¹ W M⁻¹ Wᵀ Ψ⁻¹ (Woodbury), so only the d x d matrix M is
    factorised, never the D x D covariance C.
    """
    weight_over_noise, cholesky = _posterior_precision_cholesky(params)
    noise_variance = _noise_variance(params)
    whitened = jax.scipy.linalg.solve_triangular(cholesky, weight_over_noise.T, lower=True)  # L⁻¹ Wᵀ Ψ⁻¹
    log_determinant = 2 * jnp.sum(jnp.log(jnp.diag(cholesky))) + jnp.sum(jnp.log(noise_variance))
    trace = jnp.sum(jnp.diag(data_covariance) / noise_variance) - jnp.sum((whitened @ data_covariance) * whitened)
    data_dim = data_covariance.shape[0]
    return -0.5 * (data_dim * math.log(2 * math.pi) + log_determinant + trace)


def _em_step(params: Params, data_covariance: Array, min_noise_variance: Array) -> tuple[Params, Array]:
    """One EM iteration, θ_t -> (θ_{t+1}, (1/N) Σ_i log p(x_i; θ_t)), from S alone.

    E-step (Bishop 2006, eqs. 12.66-12.68), with M = I + Wᵀ Ψ⁻¹ W and β = M⁻¹ Wᵀ Ψ⁻¹:

        E[z_i] = β (x_i - x̄),    E[z_i z_iᵀ] = M⁻¹ + E[z_i] E[z_i]ᵀ

    M-step (eqs. 12.69-12.70), written with the sums over i as S:

        W_new = S βᵀ (M⁻¹ + β S βᵀ)⁻¹,    Ψ_new = diag(S - W_new β S)

    For PPCA (`noise_variance` of shape ()), σ²_new = tr(S - W_new β S) / D,
    Tipping & Bishop (1999), eq. 28. Ψ is kept at least `min_noise_variance`.
    """
    weight_over_noise, cholesky = _posterior_precision_cholesky(params)
    posterior_covariance = jax.scipy.linalg.cho_solve(
        (cholesky, True), jnp.eye(cholesky.shape[0], dtype=cholesky.dtype)
    )  # M⁻¹
    projection = jax.scipy.linalg.cho_solve((cholesky, True), weight_over_noise.T)  # β, shape (d, D)
    cross_moment = data_covariance @ projection.T  # (1/N) Σ_i (x_i - x̄) E[z_i]ᵀ, shape (D, d)
    second_moment = posterior_covariance + projection @ cross_moment  # (1/N) Σ_i E[z_i z_iᵀ]
    second_moment_cholesky = jnp.linalg.cholesky(second_moment)
    weight = jax.scipy.linalg.cho_solve((second_moment_cholesky, True), cross_moment.T).T
    noise_variance = jnp.diag(data_covariance) - jnp.sum(weight * cross_moment, axis=1)
    if params.noise_variance.ndim == 0:
        noise_variance = jnp.mean(noise_variance)
    noise_variance = jnp.maximum(noise_variance, min_noise_variance)
    new_params = Params(weight=weight, bias=params.bias, noise_variance=noise_variance)
    return new_params, _mean_log_marginal(params, data_covariance)


@functools.partial(jax.jit, static_argnames=("latent_dim", "max_iter", "isotropic"))
def _fit_em(
    key: Array,
    data: Array,
    latent_dim: int,
    max_iter: int,
    tol: Array,
    min_noise_variance: Array | None,
    isotropic: bool,
) -> tuple[Params, EMInfo]:
    mean, data_covariance = _mean_and_covariance(data)
    variance = jnp.diag(data_covariance)
    if min_noise_variance is None:  # PPCA: a floor far below the data's scale, against σ² = 0
        min_noise_variance = jnp.finfo(data.dtype).eps * jnp.mean(variance)
    # θ_0: W Wᵀ and Ψ explain half of each variance each, in expectation over W.
    weight = jnp.sqrt(variance / (2 * latent_dim))[:, None] * jax.random.normal(
        key, (data.shape[1], latent_dim), data.dtype
    )
    noise_variance = jnp.mean(variance) / 2 if isotropic else variance / 2
    params = Params(weight=weight, bias=mean, noise_variance=jnp.maximum(noise_variance, min_noise_variance))
    return run_em(lambda params: _em_step(params, data_covariance, min_noise_variance), params, max_iter, tol)


def fit_factor_analysis(
    key: Array, data: Array, latent_dim: int, max_iter: int = 1000, tol: float = 1e-6, min_noise_variance: float = 1e-6
) -> tuple[Params, EMInfo]:
    """Fits factor analysis, x ~ N(b, W Wᵀ + Ψ) with Ψ diagonal, by EM.

    b is the data mean x̄ (its maximum-likelihood estimate); W and Ψ come from
    EM (Ghahramani & Hinton 1996; Bishop 2006, §12.2.4, eqs. 12.66-12.70), whose
    E-step is the exact posterior p(z | x_i; θ_t) = N(β (x_i - x̄), M⁻¹),
    M = I + Wᵀ Ψ⁻¹ W, through a Cholesky factor of the d x d matrix M. Every
    iteration is computed from S = (1/N) Σ_i (x_i - x̄)(x_i - x̄)ᵀ, so its cost
    does not grow with N. `EMInfo.objective` is the exact mean log-likelihood
    (1/N) Σ_i log N(x_i; b, W Wᵀ + Ψ), which EM never decreases.

    θ_0: W with independent N(0, s_d / (2d)) entries in row d and Ψ = s_d / 2,
    where s_d is the variance of column d, so that W Wᵀ + Ψ matches the data's
    variances in expectation.

    Args:
      key: PRNG key for W's initialisation.
      data: datapoints x_1 … x_N, shape (N, D), N >= 2, no constant column.
      latent_dim: d, with 1 <= d < D.
      max_iter: the most EM iterations.
      tol: stop once the mean log-likelihood changes by less than this.
      min_noise_variance: the floor on every ψ_d, against the Heywood case ψ_d -> 0.

    Precision: S holds ψ_d only to ε max_d S_dd (ε = 1.2e-7 in float32), so
    noise variances below D ε max_d S_dd are rounding noise, and so is the
    objective; the fit then warns (a RuntimeWarning), and float64 data under
    `jax.enable_x64(True)` resolves them.

    Returns:
      (θ, with `noise_variance` of shape (D,); `EMInfo`).

    Raises:
      ValueError: if `data` is not 2-D, has fewer than 2 datapoints, NaN, inf
        or a constant column, or `latent_dim` is not in [1, D).
    """
    data, latent_dim = _check_data(data, latent_dim)
    if not isinstance(data, jax.core.Tracer):
        constant = np.flatnonzero(np.all(np.asarray(data) == np.asarray(data[:1]), axis=0))
        if constant.size:
            raise ArgumentError(
                f"column {constant[0]} is constant; factor analysis needs every column to vary, drop it."
            )
    max_iter = _validation.check_num_samples(max_iter, "max_iter")
    params, info = _fit_em(key, data, latent_dim, max_iter, tol, min_noise_variance, isotropic=False)
    if not isinstance(params.noise_variance, jax.core.Tracer):
        _warn_if_below_resolution(params.noise_variance, data)
    return params, info


def log_likelihood_error_bound(noise_variance: Array, data: Array) -> float:
    """How far rounding can move the mean log-likelihood of a linear-Gaussian fit to `data`, in nats per datapoint.

    S = (1/N) Σ_i (x_i - x̄)(x_i - x̄)ᵀ, formed in the data's precision, holds its
    entries only to ε max_d S_dd (ε the machine epsilon of the data's dtype), which
    moves tr(C⁻¹ S), and so the mean log-likelihood, by up to

        D ε max_d S_dd / min_d ψ_d.

    Above 1 nat the fitted ψ and the log-likelihood are rounding noise.
    """
    rows = np.asarray(data)
    return (
        rows.shape[1]
        * float(np.finfo(rows.dtype).eps)
        * float(np.max(np.var(rows, axis=0)))
        / float(np.min(noise_variance))
    )


def _warn_if_below_resolution(noise_variance: Array, data: Array) -> None:
    """Warns where S, formed in the data's precision, cannot resolve the fitted ψ_d
    (`log_likelihood_error_bound` above 1 nat)."""
    error_bound = log_likelihood_error_bound(noise_variance, data)
    if error_bound > 1:
        warnings.warn(
            f"factor analysis in {data.dtype}: the smallest noise variance, {float(np.min(noise_variance)):.3g}, "
            f"is below what S = (1/N) Σ (x_i - x̄)(x_i - x̄)ᵀ resolves in {data.dtype}, so ψ and the "
            f"log-likelihood (off by up to {error_bound:.3g} nats per datapoint) are rounding noise; "
            "fit in float64: with jax.enable_x64(True), pass the data as float64.",
            RuntimeWarning,
            stacklevel=3,
        )


@functools.partial(jax.jit, static_argnames="latent_dim")
def _fit_ppca(data: Array, latent_dim: int) -> Params:
    mean, data_covariance = _mean_and_covariance(data)
    eigenvalues, eigenvectors = jnp.linalg.eigh(data_covariance)  # ascending
    # Data in a d-dimensional subspace (N <= d + 1 datapoints, say) leaves eigenvalues that are 0 but
    # for rounding, whose mean can be negative: σ² keeps the floor of `fit_ppca_em`.
    floor = jnp.finfo(data.dtype).eps * jnp.mean(jnp.diag(data_covariance))
    noise_variance = jnp.maximum(jnp.mean(eigenvalues[:-latent_dim]), floor)
    # The d largest, in decreasing order; max(·, 0) only guards rounding.
    scales = jnp.sqrt(jnp.maximum(eigenvalues[::-1][:latent_dim] - noise_variance, 0))
    weight = eigenvectors[:, ::-1][:, :latent_dim] * scales
    return Params(weight=weight, bias=mean, noise_variance=noise_variance)


def fit_ppca(data: Array, latent_dim: int) -> Params:
    """The maximum-likelihood probabilistic PCA in closed form (Tipping & Bishop 1999; Bishop 2006, eqs. 12.45-12.46).

        b  = x̄,    σ² = (1 / (D - d)) Σ_{j > d} λ_j,    W = U_d (Λ_d - σ² I)^½

    where λ_1 >= … >= λ_D are the eigenvalues of S = (1/N) Σ_i (x_i - x̄)(x_i - x̄)ᵀ
    and U_d holds the eigenvectors of the d largest. W is unique up to a
    rotation R, W U_d (Λ_d - σ² I)^½ R, which leaves p(x; θ) unchanged; here R = I.
    As in `fit_ppca_em`, σ² is at least machine epsilon times the mean variance
    (1/D) tr S: data that lies in a d-dimensional subspace has σ² = 0, and
    then p(x; θ) is degenerate.

    Args:
      data: datapoints x_1 … x_N, shape (N, D), N >= 2.
      latent_dim: d, with 1 <= d < D.

    Returns:
      θ, with `noise_variance` σ² of shape ().

    Raises:
      ValueError: if `data` is not 2-D, has fewer than 2 datapoints, NaN or
        inf, or `latent_dim` is not in [1, D).
    """
    data, latent_dim = _check_data(data, latent_dim)
    return _fit_ppca(data, latent_dim)


def fit_ppca_em(
    key: Array, data: Array, latent_dim: int, max_iter: int = 1000, tol: float = 1e-7
) -> tuple[Params, EMInfo]:
    """Fits probabilistic PCA, x ~ N(b, W Wᵀ + σ² I), by EM (Tipping & Bishop 1999, eqs. 27-28).

    The E-step and M-step of `fit_factor_analysis` with Ψ = σ² I, so that

        W_new = S W (σ² I + M̃⁻¹ Wᵀ S W)⁻¹,    σ²_new = (1/D) tr(S - S W M̃⁻¹ W_newᵀ),    M̃ = Wᵀ W + σ² I

    (Bishop 2006, §12.2.2, eqs. 12.54-12.57). It converges to the closed form of `fit_ppca`, up to
    a rotation of W. `EMInfo.objective` is the exact mean log-likelihood
    (1/N) Σ_i log N(x_i; b, W Wᵀ + σ² I), which EM never decreases. θ_0 is that
    of `fit_factor_analysis` with σ² = mean_d s_d / 2, and σ² is kept above
    machine epsilon times the mean variance, so the E-step never divides by 0.

    Args:
      key: PRNG key for W's initialisation.
      data: datapoints x_1 … x_N, shape (N, D), N >= 2.
      latent_dim: d, with 1 <= d < D.
      max_iter: the most EM iterations.
      tol: stop once the mean log-likelihood changes by less than this.

    Returns:
      (θ, with `noise_variance` σ² of shape (); `EMInfo`).

    Raises:
      ValueError: if `data` is not 2-D, has fewer than 2 datapoints, NaN or
        inf, or `latent_dim` is not in [1, D).
    """
    data, latent_dim = _check_data(data, latent_dim)
    max_iter = _validation.check_num_samples(max_iter, "max_iter")
    return _fit_em(key, data, latent_dim, max_iter, tol, None, isotropic=True)


def num_free_parameters(data_dim: int, latent_dim: int, isotropic: bool = False) -> int:
    """Free parameters of θ, for the BIC: D means, D·d loadings less the d(d − 1)/2 of a
    rotation that leaves p(x; θ) unchanged, and D noise variances (factor analysis) or
    one (PPCA, `isotropic=True`) (Bishop 2006, §12.2.1)."""
    noise = 1 if isotropic else data_dim
    return data_dim + data_dim * latent_dim - latent_dim * (latent_dim - 1) // 2 + noise


def bic(params: Params, data: Array) -> Array:
    """-2 Σ_i log p(x_i; θ) + (free parameters) · log N, the Bayesian information criterion (lower is better)."""
    num_data = data.shape[0]
    data_dim, latent_dim = params.weight.shape
    total = jnp.sum(jax.vmap(log_marginal, in_axes=(None, 0))(params, data))
    isotropic = jnp.ndim(params.noise_variance) == 0
    return -2 * total + num_free_parameters(data_dim, latent_dim, isotropic) * jnp.log(num_data)

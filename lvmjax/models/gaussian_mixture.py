"""The mixture of Gaussians as a latent variable model (the seed texts' shallow LVM).

    z ~ Categorical(π),    x | z = k ~ N(μ_k, Σ_k),    π = softmax(logits),  Σ_k = L_k L_kᵀ

The latent is one of K components, so the marginal and the posterior are
finite sums (seed text, §2.2):

    p(x; θ)          = Σ_k π_k N(x; μ_k, Σ_k)
    p(z = k | x; θ)  = π_k N(x; μ_k, Σ_k) / p(x; θ)     (the responsibilities)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation
from lvmjax.model import LatentVariableModel
from lvmjax.models._em import EMInfo, run_em

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


# --- Fitting by EM ----------------------------------------------------------------------

COVARIANCE_TYPES = ("full", "diag", "spherical")


def component_log_probs(params: Params, data: Array) -> Array:
    """log N(x_i; μ_k, Σ_k) for every datapoint and component, shape (N, K).

    With the precision's Cholesky factor P_k = L_k⁻ᵀ (Σ_k⁻¹ = P_k P_kᵀ), the
    Mahalanobis term is |x_i P_k - μ_k P_k|², so the work is one matrix product
    per component rather than a triangular solve per datapoint.
    """
    num_components, data_dim = params.means.shape
    identity = jnp.broadcast_to(jnp.eye(data_dim, dtype=data.dtype), (num_components, data_dim, data_dim))
    precision_cholesky = jnp.swapaxes(jax.scipy.linalg.solve_triangular(params.scale_tril, identity, lower=True),
                                      1, 2)  # L_k⁻ᵀ, upper triangular
    # One (N, D) x (D, K·D) product for all components at once.
    stacked = jnp.swapaxes(precision_cholesky, 0, 1).reshape(data_dim, num_components * data_dim)
    projected = (data @ stacked).reshape(-1, num_components, data_dim)
    projected = projected - jnp.einsum("kd,kde->ke", params.means, precision_cholesky)
    log_det = jnp.sum(jnp.log(jnp.diagonal(precision_cholesky, axis1=1, axis2=2)), axis=1)
    return -0.5 * (data_dim * jnp.log(2 * jnp.pi) + jnp.sum(projected**2, axis=-1)) + log_det


def e_step(params: Params, data: Array) -> tuple[Array, Array]:
    """The E-step: log r_ik = log p(z = k | x_i; θ) for all i and k, and the mean log-likelihood.

        log r_ik = log π_k + log N(x_i; μ_k, Σ_k) - log Σ_j π_j N(x_i; μ_j, Σ_j)

    Args:
      params: θ.
      data: (N, D).

    Returns:
      (log responsibilities, shape (N, K); (1/N) Σ_i log p(x_i; θ)).
    """
    weighted = jax.nn.log_softmax(params.logits) + component_log_probs(params, data)
    log_likelihood = jax.nn.logsumexp(weighted, axis=1)
    return weighted - log_likelihood[:, None], jnp.mean(log_likelihood)


def m_step(data: Array, log_responsibilities: Array, covariance_type: str = "full",
           reg_covar: float = 1e-6) -> Params:
    """The M-step: the θ that maximizes Σ_i Σ_k r_ik log p(x_i, z = k; θ).

        N_k = Σ_i r_ik,   π_k = N_k / N,   μ_k = Σ_i r_ik x_i / N_k,
        Σ_k = Σ_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ / N_k + reg_covar · I     ("full")

    "diag" keeps the diagonal of Σ_k, "spherical" its mean times I. As in
    scikit-learn, N_k gets 10 machine epsilons so that an empty component
    stays finite, and `reg_covar` keeps every covariance positive definite.

    Args:
      data: (N, D).
      log_responsibilities: (N, K).
      covariance_type: "full", "diag" or "spherical".
      reg_covar: added to the diagonal of every covariance.

    Returns:
      The new `Params` (covariances as Cholesky factors).
    """
    responsibilities = jnp.exp(log_responsibilities)
    counts = jnp.sum(responsibilities, axis=0) + 10 * jnp.finfo(data.dtype).eps
    means = responsibilities.T @ data / counts[:, None]
    num_data, data_dim = data.shape
    if covariance_type == "full":
        # Σ_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ as K batched (D, N) x (N, D) products. The centred form
        # costs a (K, N, D) buffer but, unlike Σ r x xᵀ / N_k - μ μᵀ, loses no digits when a
        # component collapses onto a few points far from the origin.
        centred = data[None, :, :] - means[:, None, :]
        weighted = centred * responsibilities.T[:, :, None]
        covariances = jnp.matmul(jnp.swapaxes(weighted, 1, 2), centred) / counts[:, None, None]
        covariances = covariances + reg_covar * jnp.eye(data_dim, dtype=data.dtype)
        scale_tril = jnp.linalg.cholesky(covariances)
    else:
        centred_squares = (data[None, :, :] - means[:, None, :]) ** 2  # (K, N, D)
        variances = jnp.einsum("nk,knd->kd", responsibilities, centred_squares) / counts[:, None] + reg_covar
        if covariance_type == "spherical":
            variances = jnp.broadcast_to(jnp.mean(variances, axis=1, keepdims=True), variances.shape)
        scale_tril = jax.vmap(jnp.diag)(jnp.sqrt(variances))
    return Params(jnp.log(counts / num_data), means, scale_tril)


def kmeans_plus_plus(key: Array, data: Array, num_components: int) -> Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): K datapoints, each next one drawn with
    probability proportional to its squared distance from the nearest one already chosen. (K, D)."""
    num_data = data.shape[0]
    keys = jax.random.split(key, num_components)
    first = data[jax.random.randint(keys[0], (), 0, num_data)]
    centres = jnp.zeros((num_components, data.shape[1]), data.dtype).at[0].set(first)
    distances = jnp.sum((data - first) ** 2, axis=1)

    def add_centre(k, carry):
        centres, distances = carry
        index = jax.random.categorical(keys[k], jnp.log(jnp.maximum(distances, 1e-30)))
        centre = data[index]
        distances = jnp.minimum(distances, jnp.sum((data - centre) ** 2, axis=1))
        return centres.at[k].set(centre), distances

    centres, _ = jax.lax.fori_loop(1, num_components, add_centre, (centres, distances))
    return centres


def initial_params(key: Array, data: Array, num_components: int, covariance_type: str = "full",
                   reg_covar: float = 1e-6) -> Params:
    """θ_0: the M-step on hard assignments of every datapoint to its nearest k-means++ centre."""
    centres = kmeans_plus_plus(key, data, num_components)
    distances = jnp.sum((data[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    assignments = jax.nn.one_hot(jnp.argmin(distances, axis=1), num_components, dtype=data.dtype)
    return m_step(data, jnp.log(assignments), covariance_type, reg_covar)


def _check_fit_arguments(data, num_components, covariance_type, reg_covar, n_init) -> Array:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}.")
    data = _validation.check_data_matrix(data)
    _validation.check_num_components(num_components, data.shape[0])
    if n_init < 1:
        raise ValueError(f"n_init must be at least 1, got {n_init}.")
    if not reg_covar >= 0:
        raise ValueError(f"reg_covar must be non-negative, got {reg_covar}.")
    return data


def fit_em(key: Array, data: Array, num_components: int, covariance_type: str = "full",
           max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, n_init: int = 1,
           init_params: Params | None = None) -> tuple[Params, EMInfo]:
    """Maximum-likelihood Gaussian mixture by EM, with k-means++ starts and parallel restarts.

    Each restart starts from `initial_params` (or `init_params`), then iterates
    `e_step` and `m_step` inside `lax.while_loop` until the mean log-likelihood
    per datapoint changes by less than `tol`, or `max_iter` times. The `n_init`
    restarts run at once under `jax.vmap`; the one with the highest final mean
    log-likelihood is returned.

    Args:
      key: PRNG key for the k-means++ seeding.
      data: (N, D), finite.
      num_components: K, between 1 and N.
      covariance_type: "full", "diag" or "spherical".
      max_iter: the most EM iterations per restart.
      tol: convergence threshold on the change of the mean log-likelihood.
      reg_covar: added to every covariance's diagonal (keeps a collapsing
        component finite; see `collapsed_components`).
      n_init: restarts.
      init_params: θ_0 for every restart instead of k-means++.

    Returns:
      (θ, `EMInfo` of the chosen restart, whose `objective` is the mean
      log-likelihood per datapoint at each iterate).
    """
    data = _check_fit_arguments(data, num_components, covariance_type, reg_covar, n_init)
    return _fit_em(key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init,
                   init_params)


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "max_iter", "n_init"))
def _fit_em(key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init, init_params):
    def step(params):
        log_responsibilities, mean_log_likelihood = e_step(params, data)
        return m_step(data, log_responsibilities, covariance_type, reg_covar), mean_log_likelihood

    def restart(key):
        start = init_params if init_params is not None else initial_params(
            key, data, num_components, covariance_type, reg_covar)
        params, info = run_em(step, start, max_iter, tol)
        return params, info, e_step(params, data)[1]

    params, info, final = jax.vmap(restart)(jax.random.split(key, n_init))
    best = jnp.argmax(jnp.where(jnp.isfinite(final), final, -jnp.inf))
    return jax.tree_util.tree_map(lambda leaf: leaf[best], (params, info))


def collapsed_components(params: Params, reg_covar: float = 1e-6, factor: float = 10.0) -> Array:
    """Which components collapsed onto too few points: a covariance direction of variance
    below factor · reg_covar, held up by the regularizer alone. Shape (K,), bool."""
    variances = jnp.diagonal(params.scale_tril, axis1=1, axis2=2) ** 2
    return jnp.min(variances, axis=1) < factor * reg_covar


def num_free_parameters(num_components: int, data_dim: int, covariance_type: str) -> int:
    """Free parameters of θ: K - 1 mixing weights, K·D means, and the covariances."""
    covariance = {"full": data_dim * (data_dim + 1) // 2, "diag": data_dim, "spherical": 1}[covariance_type]
    return num_components - 1 + num_components * data_dim + num_components * covariance


def bic(params: Params, data: Array, covariance_type: str) -> Array:
    """The Bayesian information criterion, -2 Σ_i log p(x_i; θ) + (free parameters) · log N (lower is better)."""
    num_data = data.shape[0]
    num_components, data_dim = params.means.shape
    total = num_data * e_step(params, data)[1]
    return -2 * total + num_free_parameters(num_components, data_dim, covariance_type) * jnp.log(num_data)

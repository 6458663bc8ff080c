"""What fitted latent variable models are for (seed texts, §1): clustering, density and
anomaly scores, imputation of missing values, and dimensionality reduction.

Functions of ONE datapoint take the key first where they draw; batch with `jax.vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import _validation
from lvmjax.models import gaussian_mixture, linear_gaussian

Array = jax.Array


# --- Imputation: the conditional distribution of the missing entries --------------------


def _check_mask(x: Array, observed: Array) -> Array:
    if jnp.shape(observed) != jnp.shape(x):
        raise ValueError(f"observed has shape {jnp.shape(observed)}, but x has shape {jnp.shape(x)}; "
                         "the mask marks each entry of x as observed (True) or missing (False).")
    return jnp.asarray(observed, bool)


def gaussian_conditional(mean: Array, covariance: Array, x: Array, observed: Array) -> tuple[Array, Array]:
    """For x ~ N(μ, Σ) with some entries observed: log p(x_o) and E[x_m | x_o].

        x_m | x_o ~ N(μ_m + Σ_mo Σ_oo⁻¹ (x_o - μ_o),  Σ_mm - Σ_mo Σ_oo⁻¹ Σ_om)

    The mask is data, not shape: the observed block is embedded in a D x D
    matrix with the identity on the missing rows and columns, so every mask
    compiles to the same program and `vmap` runs over masks.

    Args:
      mean: μ, shape (D,).
      covariance: Σ, shape (D, D).
      x: one datapoint, shape (D,); its missing entries are ignored.
      observed: boolean mask, shape (D,).

    Returns:
      (log p(x_o), x with each missing entry replaced by its conditional mean).
    """
    mask = observed.astype(x.dtype)
    centred = jnp.where(observed, x - mean, 0.0)
    embedded = mask[:, None] * covariance * mask[None, :] + jnp.diag(1.0 - mask)
    cholesky = jnp.linalg.cholesky(embedded)
    solved = jax.scipy.linalg.cho_solve((cholesky, True), centred)
    num_observed = jnp.sum(mask)
    log_density = (-0.5 * centred @ solved - jnp.sum(jnp.log(jnp.diagonal(cholesky)))
                   - 0.5 * num_observed * jnp.log(2 * jnp.pi))
    conditional_mean = mean + covariance @ (mask * solved)
    return log_density, jnp.where(observed, x, conditional_mean)


def impute_gaussian_mixture(params: gaussian_mixture.Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """Exact imputation under a Gaussian mixture: E[x_m | x_o] = Σ_k p(k | x_o) E[x_m | x_o, z = k].

    Returns:
      (log p(x_o), x with its missing entries imputed).
    """
    observed = _check_mask(x, observed)
    covariances = params.scale_tril @ jnp.swapaxes(params.scale_tril, 1, 2)
    log_densities, means = jax.vmap(gaussian_conditional, in_axes=(0, 0, None, None))(
        params.means, covariances, x, observed)
    weighted = jax.nn.log_softmax(params.logits) + log_densities
    log_observed = jax.nn.logsumexp(weighted)
    return log_observed, jnp.exp(weighted - log_observed) @ means


def impute_linear_gaussian(params: linear_gaussian.Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """Exact imputation under factor analysis or PPCA, x ~ N(b, W Wᵀ + Ψ).

    Returns:
      (log p(x_o), x with its missing entries imputed).
    """
    observed = _check_mask(x, observed)
    marginal = linear_gaussian.marginal(params)
    return gaussian_conditional(marginal.mean(), marginal.covariance(), x, observed)


def top_half_missing(image_shape: tuple[int, int]) -> Array:
    """The seed text's mask: the upper half of an image is missing. Flattened, shape (H·W,)."""
    height, width = image_shape
    rows = jnp.arange(height)[:, None] >= height // 2
    return jnp.broadcast_to(rows, (height, width)).reshape(-1)


# --- Clustering ---------------------------------------------------------------------------


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """The adjusted Rand index of two clusterings (Hubert & Arabie 1985): 1 for identical
    partitions, about 0 for independent ones.

        ARI = (Σ_ij C(n_ij, 2) - E) / (½ (Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) - E),
        E = Σ_i C(a_i, 2) Σ_j C(b_j, 2) / C(n, 2)

    with n_ij the contingency table and a_i, b_j its row and column sums.
    """
    labels_true, labels_pred = np.asarray(labels_true), np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(f"the two labelings must be 1-D and of one length, got shapes {labels_true.shape} "
                         f"and {labels_pred.shape}.")
    _, true_codes = np.unique(labels_true, return_inverse=True)
    _, pred_codes = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((true_codes.max(initial=-1) + 1, pred_codes.max(initial=-1) + 1), np.int64)
    np.add.at(table, (true_codes, pred_codes), 1)

    def pairs(counts):
        return float(np.sum(counts * (counts - 1) / 2))

    total, rows, columns = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    num = len(labels_true)
    expected = rows * columns / (num * (num - 1) / 2) if num > 1 else 0.0
    maximum = (rows + columns) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (total - expected) / (maximum - expected)


def hard_labels(log_responsibilities: Array) -> Array:
    """argmax_k p(z = k | x_i) for every row of log responsibilities (N, K)."""
    return jnp.argmax(log_responsibilities, axis=-1)


def anomaly_scores(log_marginal, params, data: Array) -> Array:
    """−log p(x_i; θ) for every datapoint: higher is more anomalous.

    Args:
      log_marginal: `log_marginal(params, x)` of one datapoint, exact (e.g.
        `gaussian_mixture.log_marginal`) or an estimate.
      params: θ.
      data: (N, D).
    """
    _validation.check_finite(data, "data")
    return -jax.vmap(log_marginal, in_axes=(None, 0))(params, data)

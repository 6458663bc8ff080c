"""The mixture of Gaussians as a latent variable model (the seed texts' shallow LVM).

    z ~ Categorical(π),    x | z = k ~ N(μ_k, Σ_k),    π = softmax(logits),  Σ_k = L_k L_kᵀ

The latent is one of K components, so the marginal and the posterior are
finite sums (seed text, §2.2):

    p(x; θ)          = Σ_k π_k N(x; μ_k, Σ_k)
    p(z = k | x; θ)  = π_k N(x; μ_k, Σ_k) / p(x; θ)     (the responsibilities)

The mixture's structure (prior, marginal, posterior) and the k-means++ seeding are
those of every mixture (`lvmjax.models._mixture`); this module holds the Gaussian
components, the blocked E- and M-steps, the sufficient statistics from which an
M-step can be assembled out of parts of the data, the one-device EM, and MAP-EM
under the conjugate prior of Fraley & Raftery (2007) (`ConjugatePrior`), which
keeps a component from collapsing onto a few points. EM with
the data split over a device mesh, or streamed from the host in chunks, is
`lvmjax.distributed_em`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation
from lvmjax.errors import ArgumentError
from lvmjax.model import LatentVariableModel
from lvmjax.models import _mixture
from lvmjax.models._em import EMInfo, best_restart, run_em
from lvmjax.models._mixture import kmeans_plus_plus
from lvmjax.types import Array

__all__ = [
    "BLOCK_SIZE",
    "COVARIANCE_TYPES",
    "EXACT_COMPONENTS",
    "ConjugatePrior",
    "Params",
    "Statistics",
    "bic",
    "check_fit_options",
    "check_prior",
    "collapsed_components",
    "combine_statistics",
    "component_log_probs",
    "components",
    "default_prior",
    "e_step",
    "e_step_columns",
    "fit_em",
    "initial_params",
    "inverse_scale_tril",
    "kmeans_plus_plus",
    "likelihood",
    "log_marginal",
    "log_prior",
    "m_step",
    "marginal",
    "model",
    "num_free_parameters",
    "params_from_statistics",
    "posterior",
    "prior",
    "sufficient_statistics",
]

_MODEL_NAME = "the Gaussian mixture"  # as error messages name it


class Params(NamedTuple):
    """θ of a K-component mixture of D-dimensional Gaussians."""

    logits: Array  # shape=(K,): log π_k up to a constant
    means: Array  # shape=(K, D): μ_k
    scale_tril: Array  # shape=(K, D, D): L_k, lower-triangular with Σ_k = L_k L_kᵀ


def prior(params: Params) -> distrax.Distribution:
    """p(z) = Categorical(softmax(logits))."""
    return _mixture.prior(params.logits)


def likelihood(params: Params, z: Array) -> distrax.Distribution:
    """p(x | z = k; θ) = N(μ_k, L_k L_kᵀ)."""
    return distrax.MultivariateNormalTri(params.means[z], params.scale_tril[z])


model = LatentVariableModel(prior=prior, likelihood=likelihood)


def components(params: Params) -> distrax.Distribution:
    """The K Gaussians N(μ_k, Σ_k) as one distribution with batch_shape (K,)."""
    return distrax.MultivariateNormalTri(params.means, params.scale_tril)


def marginal(params: Params) -> distrax.Distribution:
    """p(x; θ) = Σ_k π_k N(x; μ_k, Σ_k)."""
    return _mixture.marginal(params.logits, components(params))


def log_marginal(params: Params, x: Array) -> Array:
    """Exact log p(x; θ) = log Σ_k π_k N(x; μ_k, Σ_k) of one datapoint x, shape (D,)."""
    return _mixture.log_marginal(params.logits, components(params), x, _MODEL_NAME)


def posterior(params: Params, x: Array) -> distrax.Distribution:
    """Exact p(z = k | x; θ) = π_k N(x; μ_k, Σ_k) / p(x; θ): a Categorical whose probabilities are the
    responsibilities."""
    return _mixture.posterior(params.logits, components(params), x, _MODEL_NAME)


# --- Fitting by EM ----------------------------------------------------------------------

COVARIANCE_TYPES = ("full", "diag", "spherical")

# Inside, EM keeps the data as columns, data_t = dataᵀ (D, N), and the log
# responsibilities as (K, N): every product below is then a plain (M, rows) x (rows, P)
# or (M, D) x (D, rows) matrix product, and the elementwise work runs along contiguous
# rows. It goes through the N columns in blocks, so that the temporaries ((K·D, block)
# for full covariances) stay in cache and the memory does not grow with N. When the
# block does not divide N, the last block ends at column N and overlaps the one before
# it: the E-step writes the shared columns twice, with the same values, and the M-step
# gives them weight 0 in the last block.
BLOCK_SIZE = 1024

# The diagonal forms expand Σ_d (x_d - μ_kd)² / σ_kd² into matrix products, which costs
# digits in proportion to how far μ_k lies from the data's mean in units of σ_k: a
# component collapsed onto a few points away from the bulk can lose them all. The
# EXACT_COMPONENTS components where the loss is worst are recomputed from x - μ_k.
EXACT_COMPONENTS = 4


def _block_starts(num_data: int) -> tuple[int, Array]:
    """(columns per block, the first column of each block)."""
    size = min(BLOCK_SIZE, num_data)
    return size, jnp.minimum(jnp.arange(0, num_data, size), num_data - size)


def _map_blocks(fn: Callable[[Array], Any], data_t: Array) -> Any:
    """fn applied to blocks of columns of data_t (D, N), its outputs (..., size) side by side again: (..., N)."""
    size, starts = _block_starts(data_t.shape[1])
    shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((data_t.shape[0], size), data_t.dtype))

    def write(index, outputs):
        values = fn(jax.lax.dynamic_slice_in_dim(data_t, starts[index], size, axis=1))
        return jax.tree.map(
            lambda out, value: jax.lax.dynamic_update_slice_in_dim(out, value, starts[index], axis=-1), outputs, values
        )

    zeros = jax.tree.map(lambda shape: jnp.zeros((*shape.shape[:-1], data_t.shape[1]), shape.dtype), shapes)
    return jax.lax.fori_loop(0, len(starts), write, zeros)


def _sum_blocks(statistics: Callable[[Array, Array], Any], data_t: Array, log_responsibilities_t: Array) -> Any:
    """Σ over blocks of columns of statistics(x_t, r_t): x_t (D, size), r_t = exp(log r)ᵀ (K, size)."""
    size, starts = _block_starts(data_t.shape[1])

    def add(total, index):
        x_t = jax.lax.dynamic_slice_in_dim(data_t, starts[index], size, axis=1)
        log_r_t = jax.lax.dynamic_slice_in_dim(log_responsibilities_t, starts[index], size, axis=1)
        new = jnp.arange(size) >= index * size - starts[index]  # columns that no earlier block had
        r_t = jnp.where(new, jnp.exp(log_r_t), 0)
        return jax.tree.map(jnp.add, total, statistics(x_t, r_t)), None

    shapes = jax.eval_shape(
        statistics,
        jax.ShapeDtypeStruct((data_t.shape[0], size), data_t.dtype),
        jax.ShapeDtypeStruct((log_responsibilities_t.shape[0], size), data_t.dtype),
    )
    zeros = jax.tree.map(lambda shape: jnp.zeros(shape.shape, shape.dtype), shapes)
    return jax.lax.scan(add, zeros, jnp.arange(len(starts)))[0]


def inverse_scale_tril(scale_tril: Array) -> Array:
    """L_k⁻¹ (lower triangular) by forward substitution, one row at a time: shape (K, D, D).

    Row i of X = L⁻¹ is (e_i - Σ_{j<i} L_ij X_j) / L_ii. A loop of D small steps,
    rather than `solve_triangular`, whose BLAS call can take a hundred
    milliseconds for 16 32 x 32 blocks when its threads compete for the cores.
    """
    identity = jnp.eye(scale_tril.shape[-1], dtype=scale_tril.dtype)

    def solve_row(i, inverse):
        row = (identity[i] - jnp.einsum("kj,kjd->kd", scale_tril[:, i, :], inverse)) / scale_tril[:, i, i, None]
        return inverse.at[:, i, :].set(row)

    return jax.lax.fori_loop(0, scale_tril.shape[-1], solve_row, jnp.zeros_like(scale_tril))


def _component_log_probs_fn(params: Params, diagonal: bool) -> Callable[[Array], Array]:
    """The map x_t -> log N(x_i; μ_k, Σ_k) for a block of datapoints as columns, (D, size) -> (K, size).

    Both forms use y = x - c and ν_k = μ_k - c with c = Σ_k π_k μ_k (the mean of
    the data after any M-step), so that data far from the origin keeps its digits
    in float32. The Mahalanobis term is |L_k⁻¹ y - L_k⁻¹ ν_k|²: one (K·D, D) x
    (D, size) product for all components. With diagonal Σ_k = diag(σ_k²)
    (`diagonal`, static) it is Σ_d (y_d² - 2 y_d ν_kd + ν_kd²) / σ_kd²: two
    (K, D) x (D, size) products, which lose digits in proportion to the squared
    Mahalanobis distance of c from μ_k, Σ_d ν_kd² / σ_kd². The EXACT_COMPONENTS
    components where that is largest get Σ_d ((x_d - μ_kd) / σ_kd)² instead.
    """
    num_components, data_dim = params.means.shape
    shift = jax.nn.softmax(params.logits) @ params.means
    centred_means = params.means - shift
    scales = jnp.diagonal(params.scale_tril, axis1=1, axis2=2)  # (K, D): diag L_k
    constant = -jnp.sum(jnp.log(scales), axis=1) - 0.5 * data_dim * jnp.log(2 * jnp.pi).astype(scales.dtype)
    if diagonal:
        precisions = scales**-2  # (K, D): 1 / σ_kd²
        weighted_means = -2 * precisions * centred_means
        distances = jnp.sum(precisions * centred_means**2, axis=1)  # Σ_d ν_kd² / σ_kd²
        _, worst = jax.lax.top_k(distances, min(EXACT_COMPONENTS, num_components))

        def log_probs(x_t):
            y_t = x_t - shift[:, None]
            squares = precisions @ (y_t * y_t) + weighted_means @ y_t + distances[:, None]
            standardized = (x_t[None, :, :] - params.means[worst][:, :, None]) / scales[worst][:, :, None]
            squares = squares.at[worst].set(jnp.sum(standardized**2, axis=1))
            return constant[:, None] - 0.5 * squares
    else:
        inverse = inverse_scale_tril(params.scale_tril)
        stacked = inverse.reshape(num_components * data_dim, data_dim)  # row (k, e) is row e of L_k⁻¹
        offsets = jnp.einsum("ked,kd->ke", inverse, centred_means)

        def log_probs(x_t):
            projected = (stacked @ (x_t - shift[:, None])).reshape(num_components, data_dim, -1) - offsets[:, :, None]
            return constant[:, None] - 0.5 * jnp.sum(projected**2, axis=1)

    return log_probs


def _is_diagonal(scale_tril: Array) -> Array:
    return jnp.all(scale_tril == jax.vmap(jnp.diag)(jnp.diagonal(scale_tril, axis1=1, axis2=2)))


def _by_structure(fn: Callable[..., Any], params: Params, data: Array) -> Any:
    """fn(params, data, diagonal), with `diagonal` whether every L_k is diagonal: decided here
    when params are concrete, so that only one form is compiled, and by `lax.cond` when traced."""
    diagonal = _is_diagonal(params.scale_tril)
    if isinstance(diagonal, jax.core.Tracer):
        return jax.lax.cond(
            diagonal, functools.partial(fn, diagonal=True), functools.partial(fn, diagonal=False), params, data
        )
    return fn(params, data, diagonal=bool(diagonal))


@functools.partial(jax.jit, static_argnames="diagonal")
def _component_log_probs(params: Params, data: Array, diagonal: bool) -> Array:
    return _map_blocks(_component_log_probs_fn(params, diagonal), data.T).T


def component_log_probs(params: Params, data: Array) -> Array:
    """log N(x_i; μ_k, Σ_k) for every datapoint and component, shape (N, K).

    Computed in blocks, each one matrix product (see `_component_log_probs_fn`);
    diagonal L_k take the cheaper diagonal form.
    """
    return _by_structure(_component_log_probs, params, data)


def e_step_columns(params: Params, data_t: Array, diagonal: bool) -> tuple[Array, Array]:
    """The blocked E-step on data_t = dataᵀ (D, N): (log r_ik as (K, N), log p(x_i; θ) as (N,)).

    The kernel of every EM driver, here and in `lvmjax.distributed_em`; `diagonal`
    (static) says that every L_k is diagonal, so that the diagonal form applies.
    """
    log_probs = _component_log_probs_fn(params, diagonal)
    log_weights = jax.nn.log_softmax(params.logits)[:, None]

    def block(x_t):
        weighted = log_weights + log_probs(x_t)
        log_likelihood = jax.nn.logsumexp(weighted, axis=0)
        return weighted - log_likelihood, log_likelihood

    log_responsibilities_t, log_likelihood = _map_blocks(block, data_t)
    return log_responsibilities_t, log_likelihood


def _e_step(params: Params, data_t: Array, diagonal: bool) -> tuple[Array, Array]:
    """`e_step` on data_t = dataᵀ (D, N); the log responsibilities come as (K, N)."""
    log_responsibilities_t, log_likelihood = e_step_columns(params, data_t, diagonal)
    return log_responsibilities_t, jnp.mean(log_likelihood)


@functools.partial(jax.jit, static_argnames="diagonal")
def _e_step_by_rows(params: Params, data: Array, diagonal: bool) -> tuple[Array, Array]:
    log_responsibilities_t, mean_log_likelihood = _e_step(params, data.T, diagonal)
    return log_responsibilities_t.T, mean_log_likelihood


def e_step(params: Params, data: Array) -> tuple[Array, Array]:
    """The E-step: log r_ik = log p(z = k | x_i; θ) for all i and k, and the mean log-likelihood.

        log r_ik = log π_k + log N(x_i; μ_k, Σ_k) - log Σ_j π_j N(x_i; μ_j, Σ_j)

    Args:
      params: θ.
      data: (N, D).

    Returns:
      (log responsibilities, shape (N, K); (1/N) Σ_i log p(x_i; θ)).
    """
    return _by_structure(_e_step_by_rows, params, data)


class Statistics(NamedTuple):
    """The sufficient statistics of an M-step, from some of the datapoints (a block, a device's rows, a chunk).

    Two sets of them combine into the statistics of all their datapoints by
    `combine_statistics`, so the M-step can be computed from parts of the data.
    """

    counts: Array  # shape=(K,): N_k = Σ_i r_ik
    means: Array  # shape=(K, D): μ_k = Σ_i r_ik x_i / N_k
    covariances: Array  # shape=(K, D, D) ("full") or (K, D) (the diagonal): Σ_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ / N_k


def sufficient_statistics(data_t: Array, log_responsibilities_t: Array, covariance_type: str) -> Statistics:
    """The `Statistics` of data_t = dataᵀ (D, N) with log responsibilities (K, N) (see `m_step` for how).

    A datapoint whose log responsibilities are all -inf has weight 0: that is how a
    caller masks padding rows out.
    """
    data_dim = data_t.shape[0]
    shift = jnp.mean(data_t, axis=1)
    tiny = 10 * jnp.finfo(data_t.dtype).eps
    if covariance_type == "full":
        raw_counts, sums = _sum_blocks(
            lambda x_t, r_t: (jnp.sum(r_t, axis=1), r_t @ (x_t - shift[:, None]).T), data_t, log_responsibilities_t
        )
        counts = raw_counts + tiny
        means = shift + sums / counts[:, None]

        def cross_products(x_t, r_t):
            left = (r_t[:, None, :] * (x_t[None, :, :] - means[:, :, None])).reshape(-1, x_t.shape[1])  # (K·D, size)
            right = jnp.concatenate([x_t - shift[:, None], jnp.ones((1, x_t.shape[1]), x_t.dtype)], axis=0)
            return left @ right.T

        products = _sum_blocks(cross_products, data_t, log_responsibilities_t).reshape(-1, data_dim, data_dim + 1)
        deviations = products[:, :, -1:]  # δ_k
        covariances = (products[:, :, :-1] - deviations * (means - shift)[:, None, :]) / counts[:, None, None]
        return Statistics(raw_counts, means, covariances)

    def moments(x_t, r_t):
        y_t = x_t - shift[:, None]
        return jnp.sum(r_t, axis=1), r_t @ y_t.T, r_t @ (y_t * y_t).T

    raw_counts, sums, sums_of_squares = _sum_blocks(moments, data_t, log_responsibilities_t)
    counts = raw_counts + tiny
    centred_means = sums / counts[:, None]
    means = shift + centred_means
    variances = jnp.maximum(sums_of_squares / counts[:, None] - centred_means**2, 0)
    # The rounding error of each variance is relative to Σ_i r_ik (x_id - c_d)²; the
    # EXACT_COMPONENTS components where that is largest against N_k σ_kd² are summed again
    # as Σ_i r_ik (x_id - μ_kd)².
    amplification = jnp.max(sums_of_squares / (counts[:, None] * variances + jnp.finfo(data_t.dtype).tiny), axis=1)
    _, worst = jax.lax.top_k(amplification, min(EXACT_COMPONENTS, len(counts)))
    worst_means = means[worst][:, :, None]
    exact = _sum_blocks(
        lambda x_t, r_t: jnp.einsum("jn,jdn->jd", r_t, (x_t[None, :, :] - worst_means) ** 2),
        data_t,
        log_responsibilities_t[worst],
    )
    return Statistics(raw_counts, means, variances.at[worst].set(exact / counts[worst][:, None]))


def combine_statistics(first: Statistics, second: Statistics) -> Statistics:
    """The `Statistics` of the union of two disjoint sets of datapoints (Chan, Golub & LeVeque 1979):

        N_k = N_k' + N_k'',   μ_k = μ_k' + (N_k'' / N_k) δ_k,   δ_k = μ_k'' - μ_k',
        N_k Σ_k = N_k' Σ_k' + N_k'' Σ_k'' + (N_k' N_k'' / N_k) δ_k δ_kᵀ

    Each part's covariance is centred on its own means, so no digits are lost to
    the cancellation of Σ_i r_ik x_i x_iᵀ / N_k - μ_k μ_kᵀ.
    """
    counts = first.counts + second.counts
    safe = counts + 10 * jnp.finfo(counts.dtype).eps
    deltas = second.means - first.means
    means = first.means + (second.counts / safe)[:, None] * deltas
    weight = first.counts * second.counts / safe**2
    if first.covariances.ndim == 3:
        spread = weight[:, None, None] * deltas[:, :, None] * deltas[:, None, :]
        first_weight, second_weight = (first.counts / safe)[:, None, None], (second.counts / safe)[:, None, None]
    else:
        spread = weight[:, None] * deltas**2
        first_weight, second_weight = (first.counts / safe)[:, None], (second.counts / safe)[:, None]
    return Statistics(counts, means, first_weight * first.covariances + second_weight * second.covariances + spread)


class ConjugatePrior(NamedTuple):
    """The conjugate prior on θ of Fraley & Raftery (2007), as mclust's `priorControl`, and a Dirichlet on π.

        π ~ Dirichlet(α, ..., α),    μ_k | Σ_k ~ N(μ_P, Σ_k / κ_P),    Σ_k ~ InvWishart(ν_P, Λ_P)    ("full")

    For "diag" each variance σ²_kd ~ InvGamma(ν_P / 2, ζ²_Pd / 2) and μ_kd | σ²_kd ~ N(μ_Pd, σ²_kd / κ_P);
    for "spherical" one σ²_k ~ InvGamma(ν_P / 2, ζ²_P / 2) and μ_k | σ²_k ~ N(μ_P, σ²_k I / κ_P). The
    prior is proper: κ_P > 0, ν_P > D - 1 ("full") or > 0, Λ_P positive definite, ζ²_P > 0, α >= 1
    (α = 1 is flat on the weights, mclust's choice). `default_prior` gives the paper's defaults.
    """

    mean: Array  # shape=(D,): μ_P
    mean_precision: Array  # shape=(): κ_P, the prior's weight on μ_P in pseudo-datapoints
    degrees_of_freedom: Array  # shape=(): ν_P
    scale: Array  # shape=(D, D) Λ_P ("full"), (D,) ζ²_Pd ("diag") or () ζ²_P ("spherical")
    weight_concentration: Array  # shape=(): α


def default_prior(data: Array, num_components: int, covariance_type: str = "full") -> ConjugatePrior:
    """Fraley & Raftery (2007, §3.3)'s data-dependent defaults, those of mclust's `defaultPrior`:

        μ_P = the data's mean,   κ_P = 0.01,   ν_P = D + 2,   α = 1,
        Λ_P = S / K^{2/D}                          ("full"; S the data's covariance, divisor N - 1),
        ζ²_P = (tr S / D) / K^{2/D}                ("diag": for every coordinate; "spherical")

    Λ_P / K^{2/D} is the covariance of one of K equal clusters that tile the data's spread; it
    enters each M-step as ν_P + D + 2 pseudo-datapoints of that spread, so no component's
    covariance can shrink onto a handful of points.

    Args:
      data: (N, D), finite.
      num_components: K.
      covariance_type: "full", "diag" or "spherical".
    """
    data = _validation.check_data_matrix(data)
    if covariance_type not in COVARIANCE_TYPES:
        raise ArgumentError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}.")
    num_data, data_dim = data.shape
    mean = jnp.mean(data, axis=0)
    centred = data - mean
    covariance = centred.T @ centred / max(num_data - 1, 1)
    shrink = num_components ** (2.0 / data_dim)
    if covariance_type == "full":
        scale = covariance / shrink
    else:
        spread = jnp.trace(covariance) / data_dim / shrink
        scale = jnp.full((data_dim,), spread) if covariance_type == "diag" else spread
    dtype = data.dtype
    return ConjugatePrior(
        mean, jnp.asarray(0.01, dtype), jnp.asarray(data_dim + 2, dtype), jnp.asarray(scale, dtype), jnp.ones((), dtype)
    )


def check_prior(prior: ConjugatePrior, data_dim: int, covariance_type: str) -> ConjugatePrior:
    """`prior` with its fields as arrays, checked against D and the covariance type where concrete; raises
    `ArgumentError` naming the field that makes it improper."""
    if not isinstance(prior, ConjugatePrior):
        raise ArgumentError(f"prior must be a ConjugatePrior (see default_prior), got {type(prior).__name__}.")
    prior = ConjugatePrior(*(jnp.asarray(field) for field in prior))
    scale_shape = {"full": (data_dim, data_dim), "diag": (data_dim,), "spherical": ()}[covariance_type]
    shapes = {
        "mean": (data_dim,),
        "mean_precision": (),
        "degrees_of_freedom": (),
        "scale": scale_shape,
        "weight_concentration": (),
    }
    for name, shape in shapes.items():
        if getattr(prior, name).shape != shape:
            raise ArgumentError(
                f"prior.{name} must have shape {shape} for D = {data_dim} and covariance_type "
                f"{covariance_type!r}, got {getattr(prior, name).shape}."
            )
    if any(isinstance(field, jax.core.Tracer) for field in prior):
        return prior
    minimum = data_dim - 1 if covariance_type == "full" else 0
    if not float(prior.degrees_of_freedom) > minimum:
        raise ArgumentError(
            f"prior.degrees_of_freedom must be greater than {minimum} for a proper prior "
            f"(D = {data_dim}, covariance_type {covariance_type!r}), got {float(prior.degrees_of_freedom)}."
        )
    if not float(prior.mean_precision) > 0:
        raise ArgumentError(f"prior.mean_precision must be positive, got {float(prior.mean_precision)}.")
    if not float(prior.weight_concentration) >= 1:
        raise ArgumentError(
            "prior.weight_concentration must be at least 1 (1 is flat; below 1 the posterior's mode leaves the "
            f"simplex), got {float(prior.weight_concentration)}."
        )
    if not bool(jnp.all(jnp.isfinite(prior.mean))):
        raise ArgumentError("prior.mean must be finite.")
    if covariance_type == "full":
        symmetric = bool(jnp.allclose(prior.scale, prior.scale.T))
        if not symmetric or not bool(jnp.all(jnp.isfinite(jnp.linalg.cholesky(prior.scale)))):
            raise ArgumentError("prior.scale must be a symmetric positive definite (D, D) matrix.")
    elif not bool(jnp.all(prior.scale > 0)) or not bool(jnp.all(jnp.isfinite(prior.scale))):
        raise ArgumentError("prior.scale must be positive and finite.")
    return prior


def log_prior(params: Params, prior: ConjugatePrior, covariance_type: str = "full") -> Array:
    """log p(θ) under the `ConjugatePrior`, normalized:

        log Dir(π; α) + Σ_k [log N(μ_k; μ_P, Σ_k / κ_P) + log InvWishart(Σ_k; ν_P, Λ_P)]     ("full")

    with log InvWishart(Σ; ν, Λ) = (ν/2) log|Λ| - (νD/2) log 2 - log Γ_D(ν/2) - ((ν + D + 1)/2) log|Σ|
    - tr(Λ Σ⁻¹)/2; for "diag" and "spherical" the inverse-gamma densities of the variances,
    log InvGamma(s; a, b) = a log b - log Γ(a) - (a + 1) log s - b / s.
    """
    num_components, data_dim = params.means.shape
    weights = jax.nn.log_softmax(params.logits)
    alpha = prior.weight_concentration
    log_dirichlet = (
        jax.scipy.special.gammaln(num_components * alpha)
        - num_components * jax.scipy.special.gammaln(alpha)
        + (alpha - 1) * jnp.sum(weights)
    )
    kappa, nu = prior.mean_precision, prior.degrees_of_freedom
    deviations = params.means - prior.mean  # (K, D)
    log_two_pi = jnp.log(2 * jnp.pi).astype(params.means.dtype)
    if covariance_type == "full":
        inverse = inverse_scale_tril(params.scale_tril)  # L_k⁻¹
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(params.scale_tril, axis1=1, axis2=2)), axis=1)  # log|Σ_k|
        mahalanobis = jnp.sum(jnp.einsum("ked,kd->ke", inverse, deviations) ** 2, axis=1)
        log_normal = -0.5 * (data_dim * log_two_pi + log_det - data_dim * jnp.log(kappa) + kappa * mahalanobis)
        trace = jnp.sum(jnp.einsum("ked,df->kef", inverse, jnp.linalg.cholesky(prior.scale)) ** 2, axis=(1, 2))
        log_inverse_wishart = (
            0.5 * nu * jnp.linalg.slogdet(prior.scale)[1]
            - 0.5 * nu * data_dim * jnp.log(2.0)
            - jax.scipy.special.multigammaln(0.5 * nu, data_dim)
            - 0.5 * (nu + data_dim + 1) * log_det
            - 0.5 * trace
        )
        return log_dirichlet + jnp.sum(log_normal + log_inverse_wishart)
    variances = jnp.diagonal(params.scale_tril, axis1=1, axis2=2) ** 2  # (K, D)
    log_normal = -0.5 * (log_two_pi + jnp.log(variances / kappa) + kappa * deviations**2 / variances)
    if covariance_type == "spherical":
        variances = variances[:, :1]  # one σ²_k, repeated along D
    shape, rate = 0.5 * nu, 0.5 * prior.scale
    log_inverse_gamma = (
        shape * jnp.log(rate) - jax.scipy.special.gammaln(shape) - (shape + 1) * jnp.log(variances) - rate / variances
    )
    return log_dirichlet + jnp.sum(log_normal) + jnp.sum(log_inverse_gamma)


def params_from_statistics(
    statistics: Statistics,
    num_data: int | Array,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    prior: ConjugatePrior | None = None,
) -> Params:
    """The M-step's θ from the `Statistics` of all N datapoints.

    Maximum likelihood: π_k = N_k / N, μ_k = x̄_k, Σ_k + reg_covar · I (its diagonal for "diag", the
    mean of that times I for "spherical").

    With a `ConjugatePrior`, the posterior mode (Fraley & Raftery 2007, Table 2), with
    W_k = N_k Σ_k the weighted scatter about x̄_k and δ_k = x̄_k - μ_P:

        π_k = (N_k + α - 1) / (N + K (α - 1)),     μ_k = (N_k x̄_k + κ_P μ_P) / (N_k + κ_P),
        Σ_k = (Λ_P + κ_P N_k / (κ_P + N_k) δ_k δ_kᵀ + W_k) / (ν_P + N_k + D + 2)         ("full")
        σ²_kd = (ζ²_Pd + κ_P N_k / (κ_P + N_k) δ_kd² + W_kdd) / (ν_P + N_k + 3)         ("diag")
        σ²_k = (ζ²_P + κ_P N_k / (κ_P + N_k) |δ_k|² + tr W_k) / (ν_P + (N_k + 1) D + 2)   ("spherical")

    The prior keeps every covariance positive definite by itself, so `reg_covar` is not added:
    the step is then the exact maximizer of the expected complete-data log posterior, and the
    log posterior never decreases.
    """
    counts, means, covariances = statistics
    counts = counts + 10 * jnp.finfo(counts.dtype).eps
    num_components, data_dim = means.shape
    if prior is None:
        weights = counts / num_data
        if covariance_type == "full":
            scale_tril = jnp.linalg.cholesky(covariances + reg_covar * jnp.eye(data_dim, dtype=means.dtype))
        else:
            variances = covariances + reg_covar
            if covariance_type == "spherical":
                variances = jnp.broadcast_to(jnp.mean(variances, axis=1, keepdims=True), variances.shape)
            scale_tril = jax.vmap(jnp.diag)(jnp.sqrt(variances))
        return Params(jnp.log(weights), means, scale_tril)
    alpha, kappa, nu = prior.weight_concentration, prior.mean_precision, prior.degrees_of_freedom
    weights = (counts + alpha - 1) / (num_data + num_components * (alpha - 1))
    deviations = means - prior.mean
    shrinkage = kappa * counts / (kappa + counts)  # (K,)
    posterior_means = (counts[:, None] * means + kappa * prior.mean) / (counts + kappa)[:, None]
    if covariance_type == "full":
        scatter = (
            prior.scale
            + shrinkage[:, None, None] * deviations[:, :, None] * deviations[:, None, :]
            + counts[:, None, None] * covariances
        )
        scale_tril = jnp.linalg.cholesky(scatter / (nu + counts + data_dim + 2)[:, None, None])
    else:
        scatter = shrinkage[:, None] * deviations**2 + counts[:, None] * covariances  # (K, D)
        if covariance_type == "diag":
            variances = (prior.scale + scatter) / (nu + counts + 3)[:, None]
        else:
            total = prior.scale + jnp.sum(scatter, axis=1)
            variances = jnp.broadcast_to((total / (nu + (counts + 1) * data_dim + 2))[:, None], scatter.shape)
        scale_tril = jax.vmap(jnp.diag)(jnp.sqrt(variances))
    return Params(jnp.log(weights), posterior_means, scale_tril)


def _m_step(
    data_t: Array,
    log_responsibilities_t: Array,
    covariance_type: str,
    reg_covar: float,
    prior: ConjugatePrior | None = None,
) -> Params:
    """`m_step` on data_t = dataᵀ (D, N) and log responsibilities (K, N)."""
    return params_from_statistics(
        sufficient_statistics(data_t, log_responsibilities_t, covariance_type),
        data_t.shape[1],
        covariance_type,
        reg_covar,
        prior,
    )


@functools.partial(jax.jit, static_argnames="covariance_type")
def m_step(
    data: Array,
    log_responsibilities: Array,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    prior: ConjugatePrior | None = None,
) -> Params:
    """The M-step: the θ that maximizes Σ_i Σ_k r_ik log p(x_i, z = k; θ) (+ log p(θ) with a `prior`).

        N_k = Σ_i r_ik,   π_k = N_k / N,   μ_k = Σ_i r_ik x_i / N_k,
        Σ_k = Σ_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ / N_k + reg_covar · I     ("full")

    "diag" keeps the diagonal of Σ_k, "spherical" its mean times I. As in
    scikit-learn, N_k gets 10 machine epsilons so that an empty component
    stays finite, and `reg_covar` keeps every covariance positive definite.
    With a `ConjugatePrior` the step is the posterior mode of `params_from_statistics`
    (and `reg_covar` is not needed).

    The sums run over blocks of datapoints, each one matrix product, on data
    shifted by its mean c. "full" takes two passes: the first finds μ_k, the
    second Σ_i r_ik (x_i - μ_k)(x_i - c)ᵀ for all k as one (K·D, size) x
    (size, D + 1) product, whose column of ones gives δ_k = Σ_i r_ik (x_i - μ_k)
    (zero but for rounding); subtracting δ_k (μ_k - c)ᵀ leaves the centred sum.
    Centring one factor on μ_k keeps the digits of a component that collapses
    far from c, which Σ_i r_ik x_i x_iᵀ / N_k - μ_k μ_kᵀ would lose in float32.
    "diag" and "spherical" take Σ_i r_ik (x_i - c)^∘2 / N_k - (μ_k - c)^∘2 from
    (K, size) x (size, D) products, and then, for the EXACT_COMPONENTS components
    whose variances that cancellation leaves least accurate, Σ_i r_ik (x_i - μ_k)^∘2 / N_k.

    Args:
      data: (N, D).
      log_responsibilities: (N, K).
      covariance_type: "full", "diag" or "spherical".
      reg_covar: added to the diagonal of every covariance (maximum likelihood only).
      prior: a `ConjugatePrior` for MAP-EM, or None.

    Returns:
      The new `Params` (covariances as Cholesky factors).
    """
    return _m_step(data.T, log_responsibilities.T, covariance_type, reg_covar, prior)


def initial_params(
    key: Array,
    data: Array,
    num_components: int,
    covariance_type: str = "full",
    reg_covar: float = 1e-6,
    prior: ConjugatePrior | None = None,
) -> Params:
    """θ_0: the M-step on hard assignments of every datapoint to its nearest k-means++ centre."""
    centres = kmeans_plus_plus(key, data, num_components)
    return m_step(data, _mixture.nearest_centre(centres, data), covariance_type, reg_covar, prior)


def check_fit_options(
    num_data: int, num_components: int, covariance_type: str, reg_covar: float, n_init: int, max_iter: int
) -> tuple[int, int]:
    """The checks of `fit_em`'s options against N datapoints (shared by `lvmjax.distributed_em`); n_init and
    max_iter as ints."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ArgumentError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}.")
    _validation.check_num_components(num_components, num_data)
    n_init = _validation.check_num_samples(n_init, "n_init")
    max_iter = _validation.check_num_samples(max_iter, "max_iter")
    if not reg_covar >= 0:
        raise ArgumentError(f"reg_covar must be non-negative, got {reg_covar}.")
    return n_init, max_iter


def fit_em(
    key: Array,
    data: Array,
    num_components: int,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init_params: Params | None = None,
    prior: ConjugatePrior | None = None,
) -> tuple[Params, EMInfo]:
    """Maximum-likelihood (or, with a `prior`, maximum a posteriori) Gaussian mixture by EM, with k-means++
    starts and parallel restarts.

    Each restart starts from `initial_params` (or `init_params`), then iterates
    `e_step` and `m_step` inside `lax.while_loop` until the objective per datapoint
    changes by less than `tol`, or `max_iter` times. The `n_init` restarts run at
    once under `jax.vmap`; the one with the highest final objective is returned.
    `lvmjax.distributed_em.fit_em` is the same maximum-likelihood fit with the data
    split over the devices of a mesh.

    The likelihood of a Gaussian mixture is unbounded: a component whose mean sits on
    one datapoint and whose variance shrinks to 0 sends it to infinity (`reg_covar`
    only bounds it), so the highest likelihood over restarts can be such a spurious
    maximum. A restart with a collapsed component (`collapsed_components`) is
    therefore returned only when every restart has one; check the result with
    `collapsed_components` (the command line does). MAP-EM under the `ConjugatePrior` of Fraley & Raftery
    (2007), e.g. `prior=default_prior(data, K, covariance_type)`, maximizes
    log p(θ | x) = Σ_i log p(x_i; θ) + log p(θ) + const, which is bounded: the prior's
    scale enters every covariance as ν_P + D + 2 pseudo-datapoints.

    A covariance that collapses along one direction while its others are large can fall below
    what float32 can factor when `reg_covar` is small against the data's scale (standardized
    pixels of scikit-learn's digits with full covariances, say): its Cholesky factor, and then
    θ and the objective, become NaN. `EMInfo.objective` shows it; a larger `reg_covar`, a prior,
    diagonal covariances or float64 (`jax.enable_x64`) avoid it.

    Args:
      key: PRNG key for the k-means++ seeding.
      data: (N, D), finite.
      num_components: K, between 1 and N.
      covariance_type: "full", "diag" or "spherical".
      max_iter: the most EM iterations per restart.
      tol: convergence threshold on the change of the objective per datapoint.
      reg_covar: added to every covariance's diagonal in maximum likelihood (keeps
        a collapsing component finite; see `collapsed_components`); not used with a prior.
      n_init: restarts.
      init_params: θ_0 for every restart instead of k-means++.
      prior: a `ConjugatePrior` for MAP-EM (`check_prior`), or None for maximum likelihood.

    Returns:
      (θ, `EMInfo` of the chosen restart, whose `objective` is the mean
      log-likelihood per datapoint at each iterate, plus log p(θ) / N with a prior).
    """
    data = _validation.check_data_matrix(data)
    n_init, max_iter = check_fit_options(data.shape[0], num_components, covariance_type, reg_covar, n_init, max_iter)
    if prior is not None:
        prior = check_prior(prior, data.shape[1], covariance_type)
    return _fit_em(key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init, init_params, prior)


@functools.partial(jax.jit, static_argnames=("num_components", "covariance_type", "max_iter", "n_init"))
def _fit_em(key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init, init_params, prior):
    diagonal = covariance_type != "full"
    data_t = data.T
    num_data = data.shape[0]

    def objective(params, mean_log_likelihood):
        if prior is None:
            return mean_log_likelihood
        return mean_log_likelihood + log_prior(params, prior, covariance_type) / num_data

    def step(params):
        log_responsibilities_t, mean_log_likelihood = _e_step(params, data_t, diagonal)
        new_params = _m_step(data_t, log_responsibilities_t, covariance_type, reg_covar, prior)
        return new_params, objective(params, mean_log_likelihood)

    def restart(key):
        start = (
            init_params
            if init_params is not None
            else initial_params(key, data, num_components, covariance_type, reg_covar, prior)
        )
        return run_em(step, start, max_iter, tol)

    keys = jax.random.split(key, n_init)
    if n_init == 1:  # nothing to choose from
        return restart(keys[0])
    params, info = jax.vmap(restart)(keys)
    final = jax.vmap(lambda params: objective(params, _e_step(params, data_t, diagonal)[1]))(params)
    # A restart with a collapsed component sits on a spurious maximum: chosen only if every restart does.
    degenerate = jax.vmap(lambda params: jnp.any(collapsed_components(params, reg_covar)))(params)
    final = jnp.where(degenerate & ~jnp.all(degenerate), -jnp.inf, final)
    return best_restart(final, (params, info))


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

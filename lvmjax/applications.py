"""What fitted latent variable models are for (seed texts, §1): clustering, density and
anomaly scores, imputation of missing values, dimensionality reduction, and choosing
the number of components.

Functions of ONE datapoint take the key first where they draw; batch with `jax.vmap`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import _validation, mcmc, variational
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.model import LatentVariableModel
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian
from lvmjax.types import Array, Params

if TYPE_CHECKING:  # only for annotations: importing amortized would import Flax
    from lvmjax.amortized import AmortizedModel

__all__ = [
    "ModelSelection",
    "adjusted_rand_index",
    "anomaly_scores",
    "gaussian_conditional",
    "hard_labels",
    "impute_bernoulli_mixture",
    "impute_gaussian_mixture",
    "impute_linear_gaussian",
    "impute_vae",
    "impute_vae_mcmc",
    "latent_means",
    "select_bernoulli_mixture",
    "select_gaussian_mixture",
    "top_half_missing",
]


# --- Imputation: the conditional distribution of the missing entries --------------------


def _check_mask(x: Array, observed: Array, data_dim: int | None) -> Array:
    """`observed` as a boolean array, after checking that x is ONE datapoint of `data_dim` entries (any
    number where None) and that the mask is boolean, of x's shape."""
    _validation.check_real_array(x, "x")
    shape = tuple(jnp.shape(x))
    if len(shape) != 1 or (data_dim is not None and shape != (data_dim,)):
        expected = f"({data_dim},)" if data_dim is not None else "(D,)"
        hint = " It looks like a batch: use jax.vmap over the datapoints (and masks)." if len(shape) == 2 else ""
        raise ArgumentError(
            f"x has shape {shape}, but imputation takes one datapoint of the model's shape {expected}.{hint}"
        )
    _validation.check_real_array(observed, "observed")
    if jnp.shape(observed) != shape:
        raise ArgumentError(
            f"observed has shape {jnp.shape(observed)}, but x has shape {shape}; "
            "the mask marks each entry of x as observed (True) or missing (False)."
        )
    dtype = jnp.result_type(observed)
    if dtype != np.bool_:
        # A float mask such as 0.5 would silently count as observed.
        raise ArgumentTypeError(
            f"observed must be a boolean mask (True where x_d is observed), got dtype {dtype}; "
            "for a mask of 0s and 1s pass observed == 1."
        )
    return jnp.asarray(observed)


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
    log_density = (
        -0.5 * centred @ solved - jnp.sum(jnp.log(jnp.diagonal(cholesky))) - 0.5 * num_observed * jnp.log(2 * jnp.pi)
    )
    conditional_mean = mean + covariance @ (mask * solved)
    return log_density, jnp.where(observed, x, conditional_mean)


def impute_gaussian_mixture(params: gaussian_mixture.Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """Exact imputation under a Gaussian mixture: E[x_m | x_o] = Σ_k p(k | x_o) E[x_m | x_o, z = k].

    Returns:
      (log p(x_o), x with its missing entries imputed).
    """
    observed = _check_mask(x, observed, params.means.shape[-1])
    covariances = params.scale_tril @ jnp.swapaxes(params.scale_tril, 1, 2)
    log_densities, means = jax.vmap(gaussian_conditional, in_axes=(0, 0, None, None))(
        params.means, covariances, x, observed
    )
    weighted = jax.nn.log_softmax(params.logits) + log_densities
    log_observed = jax.nn.logsumexp(weighted)
    return log_observed, jnp.exp(weighted - log_observed) @ means


def impute_linear_gaussian(params: linear_gaussian.Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """Exact imputation under factor analysis or PPCA, x ~ N(b, W Wᵀ + Ψ).

    Returns:
      (log p(x_o), x with its missing entries imputed).
    """
    observed = _check_mask(x, observed, params.bias.shape[-1])
    marginal = linear_gaussian.marginal(params)
    return gaussian_conditional(marginal.mean(), marginal.covariance(), x, observed)


def _log_likelihood_per_dimension(likelihood: distrax.Distribution, x: Array) -> Array:
    """log p(x_d | z; θ) for every entry d of x, for a likelihood that factorizes over entries.

    Supported: `distrax.Independent` of a scalar family (the Bernoulli likelihood of
    a VAE or of the mixture of Bernoullis) and `distrax.MultivariateNormalDiag`.
    A leading batch shape of the likelihood broadcasts against x.
    """
    if isinstance(likelihood, distrax.Independent) and likelihood.distribution.event_shape == ():
        return likelihood.distribution.log_prob(x)
    if isinstance(likelihood, distrax.MultivariateNormalDiag):
        return distrax.Normal(likelihood.loc, likelihood.scale_diag).log_prob(x)
    raise ArgumentTypeError(
        f"imputation needs a likelihood p(x | z) that factorizes over the entries of x, so that "
        f"log p(x_o | z) sums over the observed entries; got {type(likelihood).__name__}. Supported: "
        "distrax.Independent of a scalar distribution (e.g. Bernoulli) and distrax.MultivariateNormalDiag."
    )


def impute_bernoulli_mixture(params: bernoulli_mixture.Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """Exact imputation under a mixture of Bernoullis: the probability that each missing pixel is 1.

        p(x_o; θ)         = Σ_k π_k Π_{d ∈ o} Bern(x_d; μ_kd)
        p(z = k | x_o; θ) = π_k Π_{d ∈ o} Bern(x_d; μ_kd) / p(x_o; θ)
        p(x_d = 1 | x_o)  = Σ_k p(z = k | x_o; θ) μ_kd,    d missing

    The pixels are independent given z, so conditioning on x_o only reweights the
    components; the mask is data, as in `gaussian_conditional`, and `vmap` runs
    over masks.

    Args:
      params: θ, with K components over D pixels.
      x: one binary datapoint, shape (D,), in the dtype of `params`; its missing
        entries are ignored (they may be NaN).
      observed: boolean mask, shape (D,).

    Returns:
      (log p(x_o; θ), x with each missing entry replaced by p(x_d = 1 | x_o)).
    """
    observed = _check_mask(x, observed, params.probs_logits.shape[-1])
    if not isinstance(x, jax.core.Tracer) and not isinstance(observed, jax.core.Tracer):
        _validation.check_binary(np.asarray(x)[np.asarray(observed)], "x (its observed entries)")
    filled = jnp.where(observed, x, 0.0)
    per_pixel = _log_likelihood_per_dimension(bernoulli_mixture.components(params), filled)  # (K, D)
    weighted = jax.nn.log_softmax(params.logits) + jnp.sum(jnp.where(observed, per_pixel, 0.0), axis=-1)
    log_observed = jax.nn.logsumexp(weighted)
    probabilities = jnp.exp(weighted - log_observed) @ jax.nn.sigmoid(params.probs_logits)
    return log_observed, jnp.where(observed, x, probabilities)


def impute_vae(
    key: Array,
    amortized: AmortizedModel,
    params: Params,
    x: Array,
    observed: Array,
    num_samples: int = 1000,
    fill_value: float = 0.5,
) -> tuple[Array, Array]:
    """Imputation under a VAE by self-normalized importance sampling of p(z | x_o; θ) (Mattei & Frellsen 2019).

        z_k ~ q(z | x̃; φ),    w_k = p(x_o | z_k; θ) p(z_k; θ) / q(z_k | x̃; φ),    k = 1..K
        p(x_o; θ)    ≈ (1/K) Σ_k w_k
        E[x_m | x_o] = E_{p(z | x_o; θ)}[E[x_m | z; θ]] ≈ Σ_k w̄_k E[x_m | z_k; θ],    w̄_k = w_k / Σ_j w_j

    where p(x_o | z; θ) = Π_{d ∈ o} p(x_d | z; θ) keeps only the observed entries of
    the likelihood, and x̃ is x with every missing entry set to `fill_value`. The
    encoder never saw missing entries, so q(z | x̃) is only a proposal: the weights
    correct for it, and the estimates converge to the exact ones as K grows for any
    q whose support covers p(z | x_o) (the Gaussian encoders of `make_vae` do). The
    default 0.5 is the uninformative grey of binary images; for real-valued data a
    value near the data mean is a better proposal.

    p̂(x_o) is unbiased, so its log is consistent and biased downwards (as in
    `log_marginal_is`); the imputation is a ratio of two such estimates, with a bias
    of order 1/K. z_k is drawn with the key fold_in(key, k), the convention of
    `lvmjax.estimators`: with nothing missing, the estimate is that of
    `log_marginal_is(key, amortized.model, params, amortized.encode(params, x), x, K)`.
    Memory is K times the size of x per datapoint; `jax.lax.map` over large batches.

    Args:
      key: PRNG key.
      amortized: an `AmortizedModel` (e.g. from `make_vae`) whose likelihood
        factorizes over the entries of x: `distrax.Independent` (the Bernoulli
        VAE) or `distrax.MultivariateNormalDiag` (the Gaussian VAE).
      params: θ and φ, as `amortized.init` returns them.
      x: one datapoint, shape (D,); its missing entries are ignored (they may be NaN).
      observed: boolean mask, shape (D,).
      num_samples: K, a static int >= 1.
      fill_value: what the encoder sees in place of the missing entries.

    Returns:
      (the estimate of log p(x_o; θ), x with each missing entry replaced by its
      estimated conditional mean: a pixel probability for the Bernoulli VAE).
    """
    observed = _check_mask(x, observed, None)
    num_samples = _validation.check_num_samples(num_samples)
    filled = jnp.where(observed, x, fill_value)
    q = amortized.encode(params, filled)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(num_samples))
    latents, log_q = jax.vmap(lambda key_k: q.sample_and_log_prob(seed=key_k))(keys)
    prior = amortized.model.prior(params)

    def log_joint_observed_and_mean(z):
        likelihood = amortized.model.likelihood(params, z)
        per_entry = _log_likelihood_per_dimension(likelihood, filled)
        return prior.log_prob(z) + jnp.sum(jnp.where(observed, per_entry, 0.0)), likelihood.mean()

    log_joint, means = jax.vmap(log_joint_observed_and_mean)(latents)
    log_weights = log_joint - log_q
    log_observed = jax.nn.logsumexp(log_weights) - math.log(num_samples)
    conditional_mean = jnp.tensordot(jax.nn.softmax(log_weights), means, axes=1)
    return log_observed, jnp.where(observed, x, conditional_mean)


class _ObservedEntries(distrax.Distribution):
    """p(x_o | z; θ) = Π_{d ∈ o} p(x_d | z; θ) as a distribution over the whole x: the missing entries
    count for nothing in its log-probability."""

    def __init__(self, likelihood: distrax.Distribution, observed: Array):
        self.likelihood = likelihood
        self.observed = observed

    @property
    def event_shape(self):
        return self.likelihood.event_shape

    def log_prob(self, value: Array) -> Array:
        per_entry = _log_likelihood_per_dimension(self.likelihood, value)
        return jnp.sum(jnp.where(self.observed, per_entry, 0.0), axis=-1)

    def _sample_n(self, key: Array, n: int) -> Array:
        return self.likelihood.sample(seed=key, sample_shape=n)


def impute_vae_mcmc(
    key: Array,
    amortized: AmortizedModel,
    params: Params,
    x: Array,
    observed: Array,
    num_samples: int = 250,
    num_warmup: int = 200,
    num_chains: int = 4,
) -> tuple[Array, mcmc.MCMCInfo]:
    """Imputation under a VAE with z drawn from p(z | x_o; θ) by NUTS (`lvmjax.mcmc.sample_posterior`):

        z_s ~ p(z | x_o; θ) ∝ p(z; θ) Π_{d ∈ o} p(x_d | z; θ),    E[x_m | x_o] ≈ (1/S) Σ_s E[x_m | z_s; θ]

    the alternative to `impute_vae`'s importance weighting: no proposal, so no weights to
    degenerate when the encoder's q (which never saw missing entries) is far from the
    posterior; the cost is the chains'. The encoder is not used; the likelihood must
    factorize over the entries of x, as for `impute_vae`.

    Returns:
      (x with each missing entry replaced by its estimated conditional mean, the chains' `MCMCInfo`).
    """
    observed = _check_mask(x, observed, None)
    filled = jnp.where(observed, x, 0.5)
    model = amortized.model
    observed_model = LatentVariableModel(
        model.prior, lambda params, z: _ObservedEntries(model.likelihood(params, z), observed)
    )
    draws = mcmc.sample_posterior(key, observed_model, params, filled, num_samples, num_warmup, num_chains)
    latents = draws.samples.reshape(-1, *draws.samples.shape[2:])
    means = jax.vmap(lambda z: model.likelihood(params, z).mean())(latents)
    return jnp.where(observed, x, jnp.mean(means, axis=0)), draws.info


MASKS = ("top-half", "bottom-half", "left-half", "right-half", "random")


def top_half_missing(image_shape: tuple[int, int]) -> Array:
    """The seed text's mask: the upper half of an image is missing. Flattened, shape (H·W,)."""
    height, width = image_shape
    rows = jnp.arange(height)[:, None] >= height // 2
    return jnp.broadcast_to(rows, (height, width)).reshape(-1)


def observed_mask(
    name: str, data_dim: int, image_shape: tuple[int, int] | None = None, key: Array | None = None
) -> np.ndarray:
    """The boolean mask (D,) of the observed entries: True where x_d is seen.

    "top-half" (the seed text's: the upper half of every image is missing),
    "bottom-half", "left-half", "right-half" need images; "random" hides half of
    the entries, drawn with `key`, and works for any data.
    """
    if name not in MASKS:
        raise ArgumentError(f"unknown mask {name!r}; choose one of {', '.join(MASKS)}.")
    if name == "random":
        key = jax.random.key(0) if key is None else key
        hidden = np.asarray(jax.random.permutation(key, data_dim))[: data_dim // 2]
        observed = np.ones(data_dim, bool)
        observed[hidden] = False
        return observed
    if image_shape is None:
        raise ArgumentError(f"the mask {name!r} needs images, and this data has no image shape; use 'random'.")
    height, width = image_shape
    if height * width != data_dim:
        raise ArgumentError(f"images of {height}x{width} have {height * width} entries, not D = {data_dim}.")
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    observed = {
        "top-half": rows >= height // 2,
        "bottom-half": rows < height - height // 2,
        "left-half": columns >= width // 2,
        "right-half": columns < width - width // 2,
    }[name]
    return observed.reshape(-1)


# --- Dimensionality reduction -------------------------------------------------------------


def latent_means(posterior: Callable[[Params, Array], distrax.Distribution], params: Params, data: Array) -> Array:
    """The posterior mean of z for every datapoint: x_i ↦ E[z | x_i], from D dimensions to d.

    - Factor analysis and PPCA, `posterior=linear_gaussian.posterior`:
      E[z | x] = (I + Wᵀ Ψ⁻¹ W)⁻¹ Wᵀ Ψ⁻¹ (x - b), which for PPCA (Ψ = σ² I) is
      M⁻¹ Wᵀ (x - b) with M = Wᵀ W + σ² I (Bishop 2006, eq. 12.48): a linear map
      whose rows span the principal subspace of the maximum-likelihood W.
    - A VAE, `posterior=amortized.encode`: E_q[z | x] under the encoder's
      q(z | x; φ), the code of `lvmjax.amortized.encode_mean` (for a flow posterior,
      which has no closed-form mean, the flow's image of its base mean: `variational.code`).

    Args:
      posterior: `posterior(params, x) -> p(z | x)` (or q(z | x)) of one datapoint.
      params: θ (and φ).
      data: (N, D).

    Returns:
      The means, shape (N, d).
    """
    data = _validation.check_data_matrix(data)
    return jax.vmap(lambda x: variational.code(posterior(params, x)))(data)


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
        raise ArgumentError(
            f"the two labelings must be 1-D and of one length, got shapes {labels_true.shape} and {labels_pred.shape}."
        )
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
    data = _validation.check_data_matrix(data)
    return -jax.vmap(log_marginal, in_axes=(None, 0))(params, data)


# --- Choosing the number of components ----------------------------------------------------


class ModelSelection(NamedTuple):
    """Mixtures with K components, one per candidate K, fitted to training data and scored.

    The seed text names choosing K as a weakness of the mixture of Gaussians. The
    Bayesian information criterion (Schwarz 1978) penalizes the training
    log-likelihood by the parameter count; the held-out log-likelihood measures the
    fit on data the model has not seen.
    """

    candidates: Array  # shape=(C,), int32: the K tried
    bic: Array  # shape=(C,): -2 Σ_i log p(x_i; θ_K) + (free parameters) · log N on the training data
    train_log_likelihood: Array  # shape=(C,): (1/N) Σ_i log p(x_i; θ_K) on the training data
    test_log_likelihood: Array  # shape=(C,): (1/N_test) Σ_i log p(x_i; θ_K) on the test data
    num_components_by_bic: Array  # shape=(), int32: the K of lowest BIC
    num_components_by_test: Array  # shape=(), int32: the K of highest held-out log-likelihood
    params: tuple  # the fitted θ_K, one per candidate (their shapes differ with K)


def _select(
    key: Array,
    train: Array,
    test: Array,
    candidates: Iterable[int],
    fit: Callable[[Array, Array, int], Params],
    scores: Callable[[Params, Array, Array], tuple[Array, Array, Array]],
) -> ModelSelection:
    """Fits one model per K, with the key fold_in(key, K) so that a fit does not depend on the
    other candidates; `scores(params, train, test)` gives its (BIC, mean training log-likelihood,
    mean held-out log-likelihood)."""
    candidates = tuple(candidates)
    if not candidates:
        raise ArgumentError("candidates is empty; give at least one number of components K.")
    train = _validation.check_data_matrix(train)
    test = _validation.check_data_matrix(test).astype(train.dtype)
    if test.shape[1] != train.shape[1]:
        raise ArgumentError(f"test has D={test.shape[1]} columns but train has D={train.shape[1]}.")
    for num_components in candidates:
        _validation.check_num_components(num_components, train.shape[0])
    fits = tuple(fit(jax.random.fold_in(key, k), train, k) for k in candidates)
    scored = [scores(params, train, test) for params in fits]
    bic, train_log_likelihood, held_out = (jnp.stack(column) for column in zip(*scored, strict=True))
    ks = jnp.asarray(candidates, jnp.int32)
    return ModelSelection(
        ks, bic, train_log_likelihood, held_out, ks[jnp.nanargmin(bic)], ks[jnp.nanargmax(held_out)], fits
    )


@functools.partial(jax.jit, static_argnames="covariance_type")
def _gaussian_mixture_scores(
    params: gaussian_mixture.Params, train: Array, test: Array, covariance_type: str
) -> tuple[Array, Array, Array]:
    return (
        gaussian_mixture.bic(params, train, covariance_type),
        gaussian_mixture.e_step(params, train)[1],
        gaussian_mixture.e_step(params, test)[1],
    )


def select_gaussian_mixture(
    key: Array, train: Array, test: Array, candidates: Iterable[int], covariance_type: str = "full", **fit_options
) -> ModelSelection:
    """Fits a Gaussian mixture for every candidate K by `gaussian_mixture.fit_em`, and scores each.

        BIC(K) = -2 Σ_{i ∈ train} log p(x_i; θ_K) + (K - 1 + K·D + K·c) log N_train

    with c the covariance's free parameters (D(D+1)/2 for "full"; see
    `gaussian_mixture.num_free_parameters`), and the mean held-out log-likelihood
    (1/N_test) Σ_{i ∈ test} log p(x_i; θ_K).

    Args:
      key: PRNG key; K is fitted with fold_in(key, K).
      train: (N_train, D).
      test: (N_test, D).
      candidates: the K to try, each between 1 and N_train.
      covariance_type: "full", "diag" or "spherical".
      **fit_options: passed to `gaussian_mixture.fit_em` (`n_init`, `max_iter`, ...).

    Returns:
      A `ModelSelection`.
    """

    def fit(key, data, num_components):
        return gaussian_mixture.fit_em(key, data, num_components, covariance_type, **fit_options)[0]

    def scores(params, train, test):
        return _gaussian_mixture_scores(params, train, test, covariance_type)

    return _select(key, train, test, candidates, fit, scores)


@jax.jit
def _bernoulli_mixture_scores(
    params: bernoulli_mixture.Params, train: Array, test: Array
) -> tuple[Array, Array, Array]:
    return (
        bernoulli_mixture.bic(params, train),
        bernoulli_mixture.e_step(params, train)[1],
        bernoulli_mixture.e_step(params, test)[1],
    )


def select_bernoulli_mixture(
    key: Array, train: Array, test: Array, candidates: Iterable[int], **fit_options
) -> ModelSelection:
    """Fits a mixture of Bernoullis for every candidate K by `bernoulli_mixture.fit_em`, and scores each.

        BIC(K) = -2 Σ_{i ∈ train} log p(x_i; θ_K) + (K - 1 + K·D) log N_train

    and the mean held-out log-likelihood (1/N_test) Σ_{i ∈ test} log p(x_i; θ_K).
    θ_K is the MAP estimate under the Beta prior of `fit_em`, plugged into the
    likelihood's BIC.

    Args:
      key: PRNG key; K is fitted with fold_in(key, K).
      train: binary data, (N_train, D).
      test: binary data, (N_test, D).
      candidates: the K to try, each between 1 and N_train.
      **fit_options: passed to `bernoulli_mixture.fit_em` (`n_init`, `alpha`, ...).

    Returns:
      A `ModelSelection`.
    """
    if not isinstance(test, jax.core.Tracer):
        _validation.check_binary(test, "test")

    def fit(key, data, num_components):
        return bernoulli_mixture.fit_em(key, data, num_components, **fit_options)[0]

    return _select(key, train, test, candidates, fit, _bernoulli_mixture_scores)

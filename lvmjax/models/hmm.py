"""Hidden Markov models: a latent Markov chain of K states, one emission per time step.

    z_1 ~ Categorical(π),    z_t | z_{t-1} = i ~ Categorical(A_i),    x_t | z_t = k ~ p_k(x_t)

The latent is the whole state path z_{1:T}, K^T states, yet the seed text's sum
p(x) = Σ_z p(x, z) is exact in O(T K²) by the forward algorithm (Rabiner 1989),
because the joint factorizes along the chain:

    α_t(j) = p(x_{1:t}, z_t = j) = p_j(x_t) Σ_i α_{t-1}(i) A_ij,    p(x_{1:T}) = Σ_j α_T(j)

Every pass here is scaled (Rabiner §V.A): α_t is kept normalized, and the log of
each normalizer c_t = p(x_t | x_{1:t-1}) is summed, so log p(x) = Σ_t log c_t
never underflows; the emission log-likelihoods enter shifted by their maximum per
step. The same normalizers are the one-step predictive densities, the per-step
anomaly score. The backward pass gives the smoothed p(z_t | x_{1:T}) and the
pairwise p(z_t, z_{t+1} | x_{1:T}) (forward–backward); Viterbi the most likely
path; Baum–Welch (EM with these posteriors as its E-step) the maximum-likelihood
or, with Dirichlet priors on π and A, the MAP parameters of many sequences of
different lengths at once.

`log_marginal(..., parallel=True)` computes the same log p(x) by an associative
scan over time (Särkkä & García-Fernández 2021): the products of the per-step
matrices M_t(i, j) = A_ij p_j(x_t) in O(log T) depth, O(T K³) work.

A time step can be unobserved (`observed[t] = False`): its emission term is 1,
so the forward pass marginalizes it out, and its posterior p(z_t | x_obs) imputes
it. Padding at the end of a sequence is unobserved steps whose transitions are not
counted (`fit_em`'s `lengths`).

The HMM is also a core `LatentVariableModel` over the state path (`model(T)`), so
for small T the core's enumeration `log_marginal_exact` checks the forward
algorithm, and the core's estimators run on it.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from tensorflow_probability.substrates import jax as tfp

from lvmjax import _validation
from lvmjax._discrete import CategoricalSequence
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.model import LatentVariableModel
from lvmjax.models._em import EMInfo, best_restart, run_em
from lvmjax.models._mixture import kmeans_plus_plus
from lvmjax.types import Array

__all__ = [
    "COVARIANCE_TYPES",
    "EMISSIONS",
    "CategoricalEmission",
    "GaussianEmission",
    "Params",
    "PoissonEmission",
    "Posterior",
    "StatePath",
    "as_padded_batch",
    "check_params",
    "check_sequences",
    "emission_distribution",
    "emission_log_likelihoods",
    "emission_name",
    "filtered_marginals",
    "fit_em",
    "impute",
    "initial_params",
    "log_marginal",
    "model",
    "most_likely_states",
    "num_free_parameters",
    "posterior_marginals",
    "predict",
    "predictive_log_likelihoods",
    "sample",
]

EMISSIONS = ("gaussian", "categorical", "poisson")
COVARIANCE_TYPES = ("full", "diag")
_PROBABILITY_TOLERANCE = 1e-4  # how far from 1 a row of probabilities may sum (float32 rounding)


class GaussianEmission(NamedTuple):
    """x_t | z_t = k ~ N(μ_k, Σ_k)."""

    means: Array  # shape=(K, D)
    covariances: Array  # shape=(K, D, D) (full) or (K, D) (diagonal: the variances)


class CategoricalEmission(NamedTuple):
    """x_t | z_t = k ~ Categorical(B_k), x_t ∈ {0, …, M - 1}."""

    probs: Array  # shape=(K, M), rows sum to 1


class PoissonEmission(NamedTuple):
    """x_td | z_t = k ~ Poisson(λ_kd), independent over the D counts."""

    rates: Array  # shape=(K, D), positive


Emission = GaussianEmission | CategoricalEmission | PoissonEmission


class Params(NamedTuple):
    """θ of a hidden Markov model with K states."""

    initial_probs: Array  # shape=(K,): π_k = p(z_1 = k)
    transition_matrix: Array  # shape=(K, K): A_ij = p(z_t = j | z_{t-1} = i), rows sum to 1
    emission: Emission


class Posterior(NamedTuple):
    """What forward–backward gives for one sequence."""

    marginals: Array  # shape=(T, K): p(z_t = k | x_{1:T})
    pairwise: Array  # shape=(T - 1, K, K): p(z_t = i, z_{t+1} = j | x_{1:T})
    log_marginal: Array  # shape=(): log p(x_{1:T})


def emission_name(emission: Emission) -> str:
    """ "gaussian", "categorical" or "poisson"."""
    if isinstance(emission, GaussianEmission):
        return "gaussian"
    if isinstance(emission, CategoricalEmission):
        return "categorical"
    if isinstance(emission, PoissonEmission):
        return "poisson"
    raise ArgumentTypeError(
        "params.emission must be a GaussianEmission, CategoricalEmission or PoissonEmission, "
        f"got {type(emission).__name__}."
    )


def _is_diagonal(emission: GaussianEmission) -> bool:
    """Variances (K, D) rather than covariance matrices (K, D, D) (with any leading batch axes)."""
    return jnp.ndim(emission.covariances) == jnp.ndim(emission.means)


# --- emissions -----------------------------------------------------------------------------------


def emission_log_likelihoods(emission: Emission, x: Array) -> Array:
    """log p_k(x_t) for every time step and state: shape (T, K).

    Args:
      emission: the emission parameters of K states.
      x: one sequence: (T, D) for Gaussian and Poisson emissions (or (T,) for Poisson
        counts with D = 1), (T,) of integers in {0, …, M - 1} for categorical ones.
    """
    if isinstance(emission, GaussianEmission):
        x = jnp.asarray(x)
        if _is_diagonal(emission):
            variances = emission.covariances
            squared = (x[:, None, :] - emission.means[None]) ** 2 / variances[None]
            log_norm = jnp.sum(jnp.log(2 * jnp.pi * variances), axis=-1)
            return -0.5 * (jnp.sum(squared, axis=-1) + log_norm[None])
        # With Σ_k = L_k L_kᵀ, (x - μ_k)ᵀ Σ_k⁻¹ (x - μ_k) = |L_k⁻¹ x - L_k⁻¹ μ_k|²: one (K, D, D) triangular solve
        # against the identity, then a matrix product over all T steps (as scikit-learn's precision Cholesky
        # factors), instead of a triangular solve against every step, several times slower on a CPU.
        scale_tril = jnp.linalg.cholesky(emission.covariances)  # (K, D, D)
        dim = x.shape[-1]
        identity = jnp.broadcast_to(jnp.eye(dim, dtype=scale_tril.dtype), scale_tril.shape)
        inverse = jax.scipy.linalg.solve_triangular(scale_tril, identity, lower=True)  # L_k⁻¹
        projected = jnp.einsum("kde,te->tkd", inverse, x) - jnp.einsum("kde,ke->kd", inverse, emission.means)[None]
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(scale_tril, axis1=1, axis2=2)), axis=-1)
        return -0.5 * jnp.sum(projected**2, axis=-1) - half_log_det[None] - 0.5 * dim * jnp.log(2 * jnp.pi)
    if isinstance(emission, CategoricalEmission):
        return jnp.log(emission.probs).T[jnp.asarray(x, jnp.int32)]
    if isinstance(emission, PoissonEmission):
        x = jnp.asarray(x, emission.rates.dtype)
        x = x[:, None] if x.ndim == 1 else x
        rates = emission.rates
        terms = x[:, None, :] * jnp.log(rates)[None] - rates[None] - gammaln(x + 1)[:, None, :]
        # 0 · log 0 = 0: a count of 0 has probability e^{-λ} even at λ = 0.
        terms = jnp.where((x[:, None, :] == 0) & (rates[None] == 0), 0.0, terms)
        return jnp.sum(terms, axis=-1)
    emission_name(emission)  # raises
    raise AssertionError


def emission_distribution(emission: Emission) -> distrax.Distribution:
    """The K emission distributions p_k(x_t), one distribution with batch_shape (K,)."""
    if isinstance(emission, GaussianEmission):
        if _is_diagonal(emission):
            return distrax.MultivariateNormalDiag(emission.means, jnp.sqrt(emission.covariances))
        return distrax.MultivariateNormalTri(emission.means, jnp.linalg.cholesky(emission.covariances))
    if isinstance(emission, CategoricalEmission):
        return distrax.Categorical(probs=emission.probs, dtype=jnp.int32)
    if isinstance(emission, PoissonEmission):
        return tfp.distributions.Independent(tfp.distributions.Poisson(rate=emission.rates), 1)
    emission_name(emission)
    raise AssertionError


def _emission_means(emission: Emission) -> Array:
    """E[x_t | z_t = k] of each state: (K, D); for categorical emissions the probabilities (K, M)."""
    if isinstance(emission, GaussianEmission):
        return emission.means
    if isinstance(emission, CategoricalEmission):
        return emission.probs
    return emission.rates


def _step_log_likelihoods(params: Params, x: Array, observed: Array | None) -> Array:
    """`emission_log_likelihoods`, with 0 (an emission term of 1) at the unobserved steps, after the checks of
    θ and of the sequence that every function of one sequence makes (where they are concrete)."""
    check_params(params)
    _check_sequence(params.emission, x, observed)
    log_likelihoods = emission_log_likelihoods(params.emission, x)
    if observed is None:
        return log_likelihoods
    return jnp.where(jnp.asarray(observed)[:, None], log_likelihoods, 0.0)


# --- the forward and backward passes ---------------------------------------------------------------


def _shifted(log_likelihoods: Array) -> tuple[Array, Array]:
    """exp(ℓ_t - m_t) and m_t = max_k ℓ_t(k) (0 where every state is impossible)."""
    shift = jnp.max(log_likelihoods, axis=-1)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    return jnp.exp(log_likelihoods - shift[:, None]), shift


def _normalize(vector: Array) -> tuple[Array, Array]:
    total = jnp.sum(vector)
    return vector / jnp.where(total > 0, total, 1.0), total


def _forward(initial_probs: Array, transition_matrix: Array, log_likelihoods: Array) -> tuple[Array, Array]:
    """The scaled forward pass: normalized α_t (T, K) and log c_t = log p(x_t | x_{1:t-1}) (T,)."""
    likelihoods, shift = _shifted(log_likelihoods)
    first, first_norm = _normalize(initial_probs * likelihoods[0])

    def step(alpha, likelihood):
        alpha, norm = _normalize((alpha @ transition_matrix) * likelihood)
        return alpha, (alpha, norm)

    _, (alphas, norms) = jax.lax.scan(step, first, likelihoods[1:])
    alphas = jnp.concatenate([first[None], alphas])
    norms = jnp.concatenate([first_norm[None], norms])
    return alphas, jnp.log(norms) + shift


def _backward(transition_matrix: Array, log_likelihoods: Array, log_norms: Array) -> Array:
    """The scaled backward pass: β_t (T, K) with β_T = 1 and β_t = A (p(x_{t+1}) ∘ β_{t+1}) / c_{t+1}, where
    p(x_{t+1}) and c_{t+1} share the shift of the forward pass."""
    likelihoods, shift = _shifted(log_likelihoods)
    norms = jnp.exp(log_norms - shift)

    def step(beta, inputs):
        likelihood, norm = inputs
        beta = transition_matrix @ (likelihood * beta) / jnp.where(norm > 0, norm, 1.0)
        return beta, beta

    last = jnp.ones_like(log_likelihoods[0])
    _, betas = jax.lax.scan(step, last, (likelihoods[1:], norms[1:]), reverse=True)
    return jnp.concatenate([betas, last[None]])


def _parallel_log_marginal(initial_probs: Array, transition_matrix: Array, log_likelihoods: Array) -> Array:
    """log p(x) as the product M_1 M_2 … M_T by `jax.lax.associative_scan` (Särkkä & García-Fernández 2021).

    M_1(i, j) = π_j p_j(x_1) (every row alike), M_t(i, j) = A_ij p_j(x_t); each
    partial product is kept with unit sum and its log scale carried beside it.
    """
    likelihoods, shift = _shifted(log_likelihoods)
    num_states = initial_probs.shape[0]
    first = jnp.broadcast_to(initial_probs * likelihoods[0], (num_states, num_states))
    matrices = jnp.concatenate([first[None], transition_matrix[None] * likelihoods[1:, None, :]])

    def unit(matrices):
        totals = jnp.sum(matrices, axis=(-2, -1))
        return matrices / jnp.where(totals > 0, totals, 1.0)[..., None, None], jnp.log(totals)

    matrices, log_scales = unit(matrices)
    log_scales = log_scales + shift

    def combine(earlier, later):
        product, log_scale = unit(earlier[0] @ later[0])
        return product, earlier[1] + later[1] + log_scale

    products, total_log_scales = jax.lax.associative_scan(combine, (matrices, log_scales))
    return total_log_scales[-1] + jnp.log(jnp.sum(products[-1, 0]))


# --- one sequence --------------------------------------------------------------------------------


def log_marginal(params: Params, x: Array, observed: Array | None = None, parallel: bool = False) -> Array:
    """log p(x_{1:T}; θ) of one sequence, exact, by the forward algorithm.

        log p(x_{1:T}) = Σ_t log p(x_t | x_{1:t-1}) = Σ_t log Σ_j p_j(x_t) Σ_i α_{t-1}(i) A_ij

    Args:
      params: θ.
      x: one sequence, (T, D) or (T,) (see `emission_log_likelihoods`).
      observed: optional (T,) bool; the unobserved steps are summed out.
      parallel: by an associative scan over time (depth O(log T)) instead of a sequential scan.

    Returns:
      A scalar.
    """
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    if parallel:
        return _parallel_log_marginal(params.initial_probs, params.transition_matrix, log_likelihoods)
    return jnp.sum(_forward(params.initial_probs, params.transition_matrix, log_likelihoods)[1])


def predictive_log_likelihoods(params: Params, x: Array, observed: Array | None = None) -> Array:
    """log p(x_t | x_{1:t-1}; θ) of every step, shape (T,): the per-step anomaly score's negative.

    They sum to `log_marginal`; an unobserved step's entry is 0.
    """
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    return _forward(params.initial_probs, params.transition_matrix, log_likelihoods)[1]


def filtered_marginals(params: Params, x: Array, observed: Array | None = None) -> Array:
    """p(z_t = k | x_{1:t}; θ), the filtered state probabilities, shape (T, K)."""
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    return _forward(params.initial_probs, params.transition_matrix, log_likelihoods)[0]


def _smooth(params: Params, log_likelihoods: Array) -> tuple[Array, Array, Array, Array]:
    """(α, β, log c, W) of one sequence's forward–backward pass, with W_t = p(x_{t+1}) β_{t+1} / c_{t+1}
    (T - 1, K), the factor of the pairwise posteriors α_t(i) A_ij W_t(j) beside α_t and A."""
    alphas, log_norms = _forward(params.initial_probs, params.transition_matrix, log_likelihoods)
    betas = _backward(params.transition_matrix, log_likelihoods, log_norms)
    likelihoods, shift = _shifted(log_likelihoods)
    norms = jnp.exp(log_norms - shift)
    next_weights = likelihoods[1:] * betas[1:] / jnp.where(norms[1:] > 0, norms[1:], 1.0)[:, None]
    return alphas, betas, log_norms, next_weights


def posterior_marginals(params: Params, x: Array, observed: Array | None = None) -> Posterior:
    """Forward–backward: the smoothed and pairwise posteriors of one sequence.

        p(z_t = k | x_{1:T}) = α_t(k) β_t(k)
        p(z_t = i, z_{t+1} = j | x_{1:T}) = α_t(i) A_ij p_j(x_{t+1}) β_{t+1}(j) / c_{t+1}

    with the normalized α and the scaled β. The smoothed marginals are also the
    gradient of log p(x) with respect to the emission log-likelihoods ℓ_t(k).
    """
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    alphas, betas, log_norms, weights = _smooth(params, log_likelihoods)
    marginals = alphas * betas
    pairwise = alphas[:-1, :, None] * params.transition_matrix[None] * weights[:, None, :]
    return Posterior(marginals, pairwise, jnp.sum(log_norms))


def most_likely_states(params: Params, x: Array, observed: Array | None = None) -> Array:
    """The Viterbi path argmax_z p(z_{1:T} | x_{1:T}; θ), int32 of shape (T,) (Viterbi 1967).

        δ_1(j) = log π_j + ℓ_1(j),    δ_t(j) = max_i [δ_{t-1}(i) + log A_ij] + ℓ_t(j)

    then back along the stored argmaxes from argmax_j δ_T(j).
    """
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    log_transition = jnp.log(params.transition_matrix)

    def forward(delta, log_likelihood):
        scores = delta[:, None] + log_transition
        return jnp.max(scores, axis=0) + log_likelihood, jnp.argmax(scores, axis=0)

    first = jnp.log(params.initial_probs) + log_likelihoods[0]
    last, backpointers = jax.lax.scan(forward, first, log_likelihoods[1:])

    def backward(state, pointers):
        previous = pointers[state]
        return previous, previous

    final = jnp.argmax(last).astype(jnp.int32)
    _, earlier = jax.lax.scan(backward, final, backpointers.astype(jnp.int32), reverse=True)
    return jnp.concatenate([earlier, final[None]])


def sample(key: Array, params: Params, num_steps: int) -> tuple[Array, Array]:
    """Ancestral sampling of one sequence: z_1 ~ π, z_t ~ A_{z_{t-1}}, x_t ~ p_{z_t}.

    Returns:
      (states, int32 of shape (T,); observations, (T, D), or (T,) for categorical emissions).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ArgumentError(f"num_steps must be a positive int, got {num_steps!r}.")
    key_path, key_emissions = jax.random.split(key)
    states = _sample_path(key_path, params.initial_probs, params.transition_matrix, num_steps)
    return states, _sample_emissions(key_emissions, params.emission, states)


def _sample_path(key: Array, initial_probs: Array, transition_matrix: Array, num_steps: int) -> Array:
    """z_1 ~ π, z_t ~ A_{z_{t-1}}: int32 of shape (T,)."""
    key_first, key_rest = jax.random.split(key)
    log_transition = jnp.log(transition_matrix)
    first = jax.random.categorical(key_first, jnp.log(initial_probs)).astype(jnp.int32)

    def step(state, key):
        following = jax.random.categorical(key, log_transition[state]).astype(jnp.int32)
        return following, following

    _, rest = jax.lax.scan(step, first, jax.random.split(key_rest, num_steps - 1))
    return jnp.concatenate([first[None], rest])


def _sample_emissions(key: Array, emission: Emission, states: Array) -> Array:
    """x_t ~ p_{z_t}(x_t) for every step of a state path (T,): (T, D), or (T,) for categorical emissions."""
    if isinstance(emission, GaussianEmission):
        noise = jax.random.normal(key, (states.shape[0], emission.means.shape[-1]), emission.means.dtype)
        if _is_diagonal(emission):
            return emission.means[states] + jnp.sqrt(emission.covariances[states]) * noise
        scale_tril = jnp.linalg.cholesky(emission.covariances)[states]
        return emission.means[states] + jnp.einsum("tde,te->td", scale_tril, noise)
    if isinstance(emission, CategoricalEmission):
        return jax.random.categorical(key, jnp.log(emission.probs[states])).astype(jnp.int32)
    if isinstance(emission, PoissonEmission):
        rates = emission.rates[states]
        return jax.random.poisson(key, rates, rates.shape).astype(rates.dtype)
    emission_name(emission)
    raise AssertionError


def predict(params: Params, x: Array, steps: int, observed: Array | None = None) -> distrax.Distribution:
    """The forecast p(x_{T+h} | x_{1:T}; θ) for h = 1 … steps: a mixture with batch_shape (steps,).

        p(z_{T+h} | x_{1:T}) = p(z_T | x_{1:T}) A^h,    p(x_{T+h} | x_{1:T}) = Σ_k p(z_{T+h} = k | x_{1:T}) p_k(x)

    Its `mean()` is the point forecast, `log_prob` scores realized values, `sample` draws futures.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ArgumentError(f"steps must be a positive int, got {steps!r}.")
    last = filtered_marginals(params, x, observed)[-1]

    def step(probs, _):
        probs = probs @ params.transition_matrix
        return probs, probs

    _, state_probs = jax.lax.scan(step, last, None, length=steps)
    batched = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (steps, *leaf.shape)), params.emission)
    components = emission_distribution(batched)
    return distrax.MixtureSameFamily(distrax.Categorical(probs=state_probs), components)


def impute(params: Params, x: Array, observed: Array) -> tuple[Array, Array]:
    """The unobserved steps of one sequence filled in by their posterior mean given the observed ones.

        E[x_t | x_obs] = Σ_k p(z_t = k | x_obs) E[x_t | z_t = k]

    (for categorical emissions, the most probable category of Σ_k p(z_t = k | x_obs) B_k).

    Returns:
      (the sequence with its unobserved steps filled in, the smoothed p(z_t | x_obs) (T, K)).
    """
    marginals = posterior_marginals(params, x, observed).marginals
    expected = marginals @ _emission_means(params.emission)
    observed = jnp.asarray(observed)
    x = jnp.asarray(x)
    if isinstance(params.emission, CategoricalEmission):
        filled = jnp.where(observed, x, jnp.argmax(expected, axis=-1).astype(x.dtype))
    else:
        expected = expected[:, 0] if x.ndim == 1 else expected
        filled = jnp.where(observed.reshape(-1, *[1] * (x.ndim - 1)), x, expected.astype(x.dtype))
    return filled, marginals


# --- the HMM as a core LatentVariableModel -----------------------------------------------------------


class StatePath(CategoricalSequence):
    """p(z_{1:T}) = π_{z_1} Π_t A_{z_{t-1} z_t}, the prior over the state path: a distribution over K^T
    sequences that the core's `log_marginal_exact` enumerates."""

    def __init__(self, initial_probs: Array, transition_matrix: Array, length: int):
        self.initial_probs = initial_probs
        self.transition_matrix = transition_matrix
        self.num_categories = int(initial_probs.shape[-1])
        self.length = int(length)

    def log_prob(self, value: Array) -> Array:
        """log p(z_{1:T}) of one path (T,), or of each of a batch of them (..., T)."""
        value = jnp.asarray(value, jnp.int32)
        log_transitions = jnp.log(self.transition_matrix)[value[..., :-1], value[..., 1:]]
        return jnp.log(self.initial_probs)[value[..., 0]] + jnp.sum(log_transitions, axis=-1)

    def _sample_n(self, key: Array, n: int) -> Array:
        def one(key):
            return _sample_path(key, self.initial_probs, self.transition_matrix, self.length)

        return jax.vmap(one)(jax.random.split(key, n))


class _PathEmissions(distrax.Distribution):
    """p(x_{1:T} | z_{1:T}) = Π_t p_{z_t}(x_t): one distribution over a whole sequence."""

    def __init__(self, emission: Emission, path: Array, example: jax.ShapeDtypeStruct):
        self.emission = emission
        self.path = jnp.asarray(path, jnp.int32)
        self._example = example

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self._example.shape)

    @property
    def dtype(self):
        return self._example.dtype

    def log_prob(self, value: Array) -> Array:
        """log p(x_{1:T} | z_{1:T}) of one sequence, or of each of a batch of them."""
        value = jnp.asarray(value)
        if value.ndim > len(self.event_shape):
            return jax.vmap(self.log_prob)(value.reshape(-1, *self.event_shape)).reshape(
                value.shape[: -len(self.event_shape)]
            )
        log_likelihoods = emission_log_likelihoods(self.emission, value)
        return jnp.sum(jnp.take_along_axis(log_likelihoods, self.path[:, None], axis=1))

    def _sample_n(self, key: Array, n: int) -> Array:
        return jax.vmap(lambda key: _sample_emissions(key, self.emission, self.path))(jax.random.split(key, n))


def model(num_steps: int, emission: Emission) -> LatentVariableModel:
    """The HMM over sequences of `num_steps` as a core `LatentVariableModel`: z is the state path.

    `emission` fixes the observations' shape and dtype (its values are not used:
    the parameters are the θ passed to the model's functions). For K^T up to the
    core's enumeration limit, `lvmjax.log_marginal_exact(model(T, ...), θ, x)`
    equals `log_marginal(θ, x)`.
    """
    name = emission_name(emission)
    if name == "categorical":
        example = jax.ShapeDtypeStruct((num_steps,), jnp.int32)
    else:
        means = _emission_means(emission)
        example = jax.ShapeDtypeStruct((num_steps, means.shape[-1]), means.dtype)

    def prior(params: Params) -> distrax.Distribution:
        return StatePath(params.initial_probs, params.transition_matrix, num_steps)

    def likelihood(params: Params, z: Array) -> distrax.Distribution:
        return _PathEmissions(params.emission, z, example)

    return LatentVariableModel(prior, likelihood)


# --- checks ----------------------------------------------------------------------------------------


def _check_probability_rows(probs: Any, name: str) -> None:
    if isinstance(probs, jax.core.Tracer):
        return
    probs = np.asarray(probs)
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ArgumentError(f"{name} must hold probabilities (finite and non-negative).")
    sums = probs.sum(axis=-1)
    if not np.all(np.abs(sums - 1) <= _PROBABILITY_TOLERANCE):
        row = int(np.argmax(np.abs(sums - 1).reshape(-1)))
        raise ArgumentError(f"every row of {name} must sum to 1, but row {row} sums to {sums.reshape(-1)[row]:.6g}.")


def _check_sequence(emission: Emission, x: Any, observed: Any) -> None:
    """x is one sequence of this emission's shape, of real numbers, finite where concrete; observed is (T,)."""
    _validation.check_real_array(x, "x")
    shape = tuple(jnp.shape(x))
    if isinstance(emission, CategoricalEmission):
        expected, ok = "(T,) category indices", len(shape) == 1
    else:
        dim = jnp.shape(_emission_means(emission))[-1]
        expected = f"(T, {dim})" + (" or (T,)" if isinstance(emission, PoissonEmission) and dim == 1 else "")
        ok = shape[1:] == (dim,) or (isinstance(emission, PoissonEmission) and dim == 1 and len(shape) == 1)
    if not ok or shape[0] < 1:
        hint = " (one sequence: jax.vmap over a batch of them)" if len(shape) >= 2 and not ok else ""
        raise ArgumentError(f"x must be one sequence of shape {expected}, got {shape}{hint}.")
    _validation.check_finite(x, "x")
    if observed is not None and tuple(jnp.shape(observed)) != shape[:1]:
        raise ArgumentError(f"observed must have shape ({shape[0]},), one flag per step, got {jnp.shape(observed)}.")


def check_params(params: Params) -> None:
    """Raises an `ArgumentError` that names the problem unless θ is a valid HMM (where concrete)."""
    if not isinstance(params, Params):
        raise ArgumentTypeError(f"params must be an hmm.Params, got {type(params).__name__}.")
    emission_name(params.emission)
    num_states = np.shape(params.initial_probs)[0] if np.ndim(params.initial_probs) == 1 else None
    if num_states is None or np.shape(params.transition_matrix) != (num_states, num_states):
        raise ArgumentError(
            "params.initial_probs must have shape (K,) and params.transition_matrix (K, K), got "
            f"{np.shape(params.initial_probs)} and {np.shape(params.transition_matrix)}."
        )
    _check_probability_rows(params.initial_probs, "params.initial_probs")
    _check_probability_rows(params.transition_matrix, "params.transition_matrix")
    emission = params.emission
    if isinstance(emission, CategoricalEmission):
        _check_probability_rows(emission.probs, "params.emission.probs")
    _validation.check_finite(params, "params")
    if isinstance(emission, PoissonEmission) and not isinstance(emission.rates, jax.core.Tracer):
        if np.any(np.asarray(emission.rates) < 0):
            raise ArgumentError("params.emission.rates must be non-negative.")


# --- Baum–Welch --------------------------------------------------------------------------------------


class _Statistics(NamedTuple):
    """Expected sufficient statistics of a batch of sequences under p(z | x; θ_t)."""

    initial: Array  # (K,): Σ_s p(z_1 = k | x_s)
    transitions: Array  # (K, K): Σ_s Σ_t p(z_t = i, z_{t+1} = j | x_s)
    weights: Array  # (K,): Σ over observed steps of p(z_t = k | x)
    first: Array  # (K, D) or (K, M): Σ p(z_t = k | x) x_t (one-hot x_t for categorical emissions)
    second: Array  # (K, D, D), (K, D) or (): Σ p(z_t = k | x) x_t x_tᵀ (its diagonal for diagonal covariances)
    log_likelihood: Array  # (): Σ_s log p(x_s)


def _sequence_statistics(params: Params, x: Array, observed: Array, length: Array, num_categories: int) -> _Statistics:
    """Forward–backward of one (padded) sequence and its contribution to the M-step."""
    log_likelihoods = _step_log_likelihoods(params, x, observed)
    alphas, betas, log_norms, weights = _smooth(params, log_likelihoods)
    marginals = alphas * betas
    counted = jnp.arange(1, x.shape[0]) < length  # the transitions t -> t+1 inside the sequence
    weights = jnp.where(counted[:, None], weights, 0.0)
    transitions = params.transition_matrix * (alphas[:-1].T @ weights)  # Σ_t of the pairwise posteriors
    step_weights = jnp.where(observed[:, None], marginals, 0.0)
    emission = params.emission
    if isinstance(emission, CategoricalEmission):
        first = step_weights.T @ jax.nn.one_hot(x, num_categories, dtype=step_weights.dtype)
        second = jnp.zeros((), step_weights.dtype)
    else:
        values = x[:, None] if x.ndim == 1 else x
        values = jnp.where(observed[:, None], values, 0.0)
        first = step_weights.T @ values
        if isinstance(emission, GaussianEmission) and not _is_diagonal(emission):
            second = jnp.einsum("tk,td,te->kde", step_weights, values, values)
        elif isinstance(emission, GaussianEmission):
            second = step_weights.T @ values**2
        else:
            second = jnp.zeros((), step_weights.dtype)
    return _Statistics(marginals[0], transitions, jnp.sum(step_weights, axis=0), first, second, jnp.sum(log_norms))


def _dirichlet_mode(counts: Array, concentration: Array | float) -> Array:
    """argmax of Dirichlet(counts + α) rows: (counts + α - 1) normalized (the MLE for α = 1)."""
    pseudo = jnp.maximum(counts + concentration - 1, 0.0)
    totals = jnp.sum(pseudo, axis=-1, keepdims=True)
    return jnp.where(totals > 0, pseudo / jnp.where(totals > 0, totals, 1.0), 1.0 / counts.shape[-1])


def _m_step(params: Params, stats: _Statistics, reg_covar: float, initial_prior, transition_prior) -> Params:
    """θ_{t+1} in closed form from the expected statistics; a state with no expected mass keeps its emission."""
    initial = _dirichlet_mode(stats.initial, initial_prior)
    transition = _dirichlet_mode(stats.transitions, transition_prior)
    has_mass = stats.weights > 0
    denominator = jnp.where(has_mass, stats.weights, 1.0)[:, None]
    emission = params.emission
    if isinstance(emission, CategoricalEmission):
        probs = stats.first / denominator
        new_emission: Emission = CategoricalEmission(jnp.where(has_mass[:, None], probs, emission.probs))
    elif isinstance(emission, PoissonEmission):
        new_emission = PoissonEmission(jnp.where(has_mass[:, None], stats.first / denominator, emission.rates))
    else:
        means = stats.first / denominator
        if _is_diagonal(emission):
            covariances = stats.second / denominator - means**2 + reg_covar
            keep = has_mass[:, None]
        else:
            dim = means.shape[-1]
            covariances = stats.second / denominator[:, :, None] - means[:, :, None] * means[:, None, :]
            covariances = 0.5 * (covariances + jnp.swapaxes(covariances, 1, 2)) + reg_covar * jnp.eye(dim)
            keep = has_mass[:, None, None]
        new_emission = GaussianEmission(
            jnp.where(has_mass[:, None], means, emission.means), jnp.where(keep, covariances, emission.covariances)
        )
    return Params(initial, transition, new_emission)


def _log_prior(params: Params, initial_prior, transition_prior) -> Array:
    """log p(θ) of the Dirichlet priors on π and on each row of A, up to a constant (0 for α = 1)."""

    def term(probs, concentration):
        return jnp.sum(jnp.where(concentration == 1, 0.0, (concentration - 1) * jnp.log(probs)))

    initial_prior = jnp.broadcast_to(jnp.asarray(initial_prior, params.initial_probs.dtype), params.initial_probs.shape)
    transition_prior = jnp.broadcast_to(
        jnp.asarray(transition_prior, params.transition_matrix.dtype), params.transition_matrix.shape
    )
    return term(params.initial_probs, initial_prior) + term(params.transition_matrix, transition_prior)


def initial_params(
    key: Array,
    sequences: Array,
    num_states: int,
    emission: str = "gaussian",
    covariance_type: str = "full",
    lengths: Array | None = None,
    num_categories: int | None = None,
    reg_covar: float = 1e-6,
) -> Params:
    """θ_0 of Baum–Welch, as hmmlearn starts: π and every row of A uniform, and

    - gaussian: the means at k-means++ seeds of the observed steps, every covariance the data's;
    - poisson: the rates at k-means++ seeds of the counts (plus 1e-3, so that none is 0);
    - categorical: each row of B drawn from a Dirichlet(1, …, 1), which breaks the states' symmetry.

    `sequences` is a padded batch (S, T_max, D) (or (S, T_max)) with `lengths` (S,).
    """
    sequences = jnp.asarray(sequences)
    num_sequences, max_length = sequences.shape[:2]
    lengths = jnp.full((num_sequences,), max_length) if lengths is None else jnp.asarray(lengths)
    valid = (jnp.arange(max_length)[None] < lengths[:, None]).reshape(-1)
    dtype = jnp.result_type(float)
    uniform = jnp.full((num_states,), 1.0 / num_states, dtype)
    initial, transition = uniform, jnp.tile(uniform, (num_states, 1))
    if emission == "categorical":
        if num_categories is None:
            raise ArgumentError("initial_params needs num_categories for categorical emissions.")
        probs = jax.random.dirichlet(key, jnp.ones(num_categories, dtype), (num_states,))
        return Params(initial, transition, CategoricalEmission(probs))
    steps = sequences.reshape(num_sequences * max_length, -1).astype(dtype)
    # Padding moved to the end, never drawn as a seed (the first `count` rows are the valid ones).
    order = jnp.argsort(~valid, stable=True)
    steps = steps[order]
    count = jnp.sum(valid)
    centres = kmeans_plus_plus(key, steps, num_states, count)
    if emission == "poisson":
        return Params(initial, transition, PoissonEmission(centres + 1e-3))
    weights = jnp.where(jnp.arange(steps.shape[0]) < count, 1.0, 0.0)[:, None]
    total = count.astype(dtype)
    mean = jnp.sum(weights * steps, axis=0) / total
    centred = (steps - mean) * weights
    covariance = centred.T @ centred / total + reg_covar * jnp.eye(steps.shape[1], dtype=dtype)
    if covariance_type == "diag":
        covariances = jnp.tile(jnp.diagonal(covariance), (num_states, 1))
    else:
        covariances = jnp.tile(covariance, (num_states, 1, 1))
    return Params(initial, transition, GaussianEmission(centres, covariances))


def as_padded_batch(sequences: Any, lengths: Any, emission: str) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch (S, T_max, ...) (zeros after each sequence's end) and its lengths (S,), from a list of
    sequences of different lengths, one sequence, or a padded batch with `lengths`."""
    event_ndim = 0 if emission == "categorical" else 1
    if isinstance(sequences, (list, tuple)):
        if lengths is not None:
            raise ArgumentError("lengths is for a padded batch; a list of sequences carries its own lengths.")
        if not sequences:
            raise ArgumentError("sequences is empty; fit_em needs at least one sequence.")
        arrays = [np.asarray(sequence) for sequence in sequences]
        for index, array in enumerate(arrays):
            if emission == "poisson" and array.ndim == 1:
                arrays[index] = array = array[:, None]
            if array.ndim != event_ndim + 1:
                shape = "(T,)" if emission == "categorical" else "(T, D)"
                raise ArgumentError(f"sequence {index} must have shape {shape}, got {array.shape}.")
        shapes = {array.shape[1:] for array in arrays}
        if len(shapes) > 1:
            raise ArgumentError(f"every sequence must have the same number of columns, got {sorted(shapes)}.")
        batch_lengths = np.array([array.shape[0] for array in arrays])
        padded = np.zeros((len(arrays), batch_lengths.max(), *arrays[0].shape[1:]), np.result_type(*arrays))
        for index, array in enumerate(arrays):
            padded[index, : array.shape[0]] = array
        return padded, batch_lengths
    array = np.asarray(sequences) if not isinstance(sequences, jax.Array) else np.asarray(jax.device_get(sequences))
    if emission == "poisson" and array.ndim == 1:
        array = array[:, None]
    if array.ndim == event_ndim + 1:  # one sequence
        if lengths is not None:
            raise ArgumentError("lengths is for a padded batch of sequences; got one sequence.")
        return array[None], np.array([array.shape[0]])
    if array.ndim != event_ndim + 2:
        shape = "(T,), (S, T_max)" if emission == "categorical" else "(T, D), (S, T_max, D)"
        raise ArgumentError(f"sequences must have shape {shape} or be a list of sequences, got {array.shape}.")
    if lengths is None:
        return array, np.full(array.shape[0], array.shape[1])
    lengths = np.asarray(lengths)
    if lengths.shape != (array.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
        raise ArgumentError(f"lengths must be {array.shape[0]} integers, one per sequence, got {lengths!r}.")
    if np.any(lengths < 1) or np.any(lengths > array.shape[1]):
        raise ArgumentError(f"every length must be between 1 and the padded length {array.shape[1]}.")
    return array, lengths


def check_sequences(
    padded: np.ndarray, lengths: np.ndarray, emission: str, num_categories: int | None = None
) -> np.ndarray:
    """Refuses what no HMM of this emission can take: non-real or non-finite values, negative or
    fractional counts, categories outside {0, …, M - 1}. Returns the batch in the dtype the model takes."""
    _validation.check_real_array(padded, "sequences")
    valid = np.arange(padded.shape[1])[None] < lengths[:, None]
    values = padded[valid]
    if np.issubdtype(values.dtype, np.inexact) and not np.all(np.isfinite(values)):
        raise ArgumentError("sequences contain non-finite values (NaN or inf); mark missing steps with observed.")
    if emission in ("categorical", "poisson"):
        what = "categories" if emission == "categorical" else "counts"
        if np.any(values < 0) or np.any(values != np.round(values)):
            bad = values[(values < 0) | (values != np.round(values))].flat[0]
            raise ArgumentError(f"{emission} emissions take non-negative integer {what}, got {bad!r}.")
        if emission == "categorical":
            if num_categories is not None and values.size and values.max() >= num_categories:
                raise ArgumentError(
                    f"categories must be below num_categories={num_categories}, got {int(values.max())}."
                )
            return padded.astype(np.int32)
    return padded.astype(jnp.result_type(float))


def fit_em(
    key: Array,
    sequences: Any,
    num_states: int,
    emission: str = "gaussian",
    covariance_type: str = "full",
    lengths: Array | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_init: int = 1,
    reg_covar: float = 1e-6,
    initial_prior: float | Array = 1.0,
    transition_prior: float | Array = 1.0,
    num_categories: int | None = None,
    init_params: Params | None = None,
) -> tuple[Params, EMInfo]:
    """Baum–Welch (Baum et al. 1970): EM for an HMM over a batch of sequences, restarts in parallel.

    The E-step is forward–backward on every sequence at once (`jax.vmap` over the
    padded batch); the M-step is closed form:

        π_k ∝ Σ_s γ_{s,1}(k) + α_π - 1,      A_ij ∝ Σ_s Σ_t ξ_{s,t}(i, j) + α_A - 1
        μ_k = Σ γ_t(k) x_t / Σ γ_t(k),       Σ_k = Σ γ_t(k) (x_t - μ_k)(x_t - μ_k)ᵀ / Σ γ_t(k) + reg_covar I
        B_km = Σ γ_t(k) [x_t = m] / Σ γ_t(k),    λ_k = Σ γ_t(k) x_t / Σ γ_t(k)

    With Dirichlet concentrations α = 1 (the default) it is maximum likelihood;
    α > 1 gives the MAP estimate (MAP-EM), whose objective includes log p(θ).
    Either way the objective never decreases. The restarts run under `jax.vmap`;
    the one with the highest final objective is returned.

    Args:
      key: PRNG key for the starts (`initial_params`).
      sequences: a list of sequences of different lengths, each (T_s, D) (or (T_s,) for
        categorical emissions and one-count Poisson ones); one sequence; or a padded
        batch (S, T_max, ...) with `lengths`.
      num_states: K, between 1 and the number of time steps.
      emission: "gaussian", "categorical" or "poisson".
      covariance_type: "full" or "diag" (Gaussian emissions).
      lengths: (S,) ints, the lengths of a padded batch.
      max_iter: the most EM iterations per restart.
      tol: stop once the objective per time step changes by less than tol.
      n_init: restarts.
      reg_covar: added to the diagonal of every covariance.
      initial_prior, transition_prior: Dirichlet concentrations (scalars or arrays of
        shape (K,) and (K, K)), at least 1.
      num_categories: M of categorical emissions (the largest category + 1 by default).
      init_params: θ_0 of every restart instead of `initial_params`.

    Returns:
      (θ, `EMInfo` of the chosen restart, whose objective is the mean log-likelihood
      per observed time step, plus log p(θ) per step for MAP-EM, at each iterate).
    """
    if emission not in EMISSIONS:
        raise ArgumentError(f"emission must be one of {', '.join(EMISSIONS)}, got {emission!r}.")
    if covariance_type not in COVARIANCE_TYPES:
        raise ArgumentError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}, got {covariance_type!r}.")
    padded, batch_lengths = as_padded_batch(sequences, lengths, emission)
    padded = check_sequences(padded, batch_lengths, emission, num_categories)
    if batch_lengths.max() < 2:
        raise ArgumentError("Baum–Welch needs a sequence of at least 2 time steps, to see a transition.")
    num_steps = int(batch_lengths.sum())
    if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)):
        raise ArgumentTypeError(f"num_states must be an int, got {type(num_states).__name__}.")
    if not 1 <= num_states <= num_steps:
        raise ArgumentError(
            f"num_states must be between 1 and the number of time steps ({num_steps}), got {num_states}."
        )
    n_init = _validation.check_num_samples(n_init, "n_init")
    max_iter = _validation.check_num_samples(max_iter, "max_iter")
    if not reg_covar >= 0:
        raise ArgumentError(f"reg_covar must be non-negative, got {reg_covar}.")
    for name, concentration in (("initial_prior", initial_prior), ("transition_prior", transition_prior)):
        if not np.all(np.asarray(concentration) >= 1):
            raise ArgumentError(f"{name} must be at least 1 (a Dirichlet concentration; 1 is no prior).")
    if emission == "categorical":
        num_categories = int(padded.max()) + 1 if num_categories is None else int(num_categories)
    if init_params is not None:
        check_params(init_params)
        if emission_name(init_params.emission) != emission:
            raise ArgumentError(
                f"init_params has {emission_name(init_params.emission)} emissions, but emission={emission!r}."
            )
    return _fit_em(
        key,
        jnp.asarray(padded),
        jnp.asarray(batch_lengths, jnp.int32),
        num_states,
        emission,
        covariance_type,
        max_iter,
        tol,
        n_init,
        reg_covar,
        initial_prior,
        transition_prior,
        num_categories,
        init_params,
    )


@functools.partial(
    jax.jit, static_argnames=("num_states", "emission", "covariance_type", "max_iter", "n_init", "num_categories")
)
def _fit_em(
    key,
    padded,
    lengths,
    num_states,
    emission,
    covariance_type,
    max_iter,
    tol,
    n_init,
    reg_covar,
    initial_prior,
    transition_prior,
    num_categories,
    init_params,
):
    observed = jnp.arange(padded.shape[1])[None] < lengths[:, None]
    dtype = jnp.result_type(float)
    num_steps = jnp.sum(lengths).astype(dtype)

    def statistics(params):
        per_sequence = jax.vmap(_sequence_statistics, in_axes=(None, 0, 0, 0, None))(
            params, padded, observed, lengths, num_categories
        )
        return jax.tree.map(lambda leaf: jnp.sum(leaf, axis=0), per_sequence)

    def objective(params, stats):
        return (stats.log_likelihood + _log_prior(params, initial_prior, transition_prior)) / num_steps

    def step(params):
        stats = statistics(params)
        return _m_step(params, stats, reg_covar, initial_prior, transition_prior), objective(params, stats)

    def restart(key):
        start = (
            init_params
            if init_params is not None
            else initial_params(key, padded, num_states, emission, covariance_type, lengths, num_categories, reg_covar)
        )
        return run_em(step, start, max_iter, tol)

    keys = jax.random.split(key, n_init)
    if n_init == 1:
        return restart(keys[0])
    params, info = jax.vmap(restart)(keys)
    final = jax.vmap(lambda params: objective(params, statistics(params)))(params)
    return best_restart(final, (params, info))


def num_free_parameters(num_states: int, data_dim: int, emission: str, covariance_type: str = "full") -> int:
    """Free parameters of θ, for the BIC: K - 1 initial and K (K - 1) transition probabilities, and the
    emissions (K D means and K D (D + 1) / 2 or K D variances; K (M - 1) probabilities, with M = data_dim;
    K D rates)."""
    chain = num_states - 1 + num_states * (num_states - 1)
    if emission == "gaussian":
        covariance = data_dim * (data_dim + 1) // 2 if covariance_type == "full" else data_dim
        return chain + num_states * (data_dim + covariance)
    if emission == "categorical":
        return chain + num_states * (data_dim - 1)
    return chain + num_states * data_dim

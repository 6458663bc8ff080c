"""Latent Dirichlet allocation (Blei, Ng & Jordan 2003), fitted by mean-field variational Bayes.

K topics over a vocabulary of V words; document d has words w_d1, ..., w_dN_d:

    β_k ~ Dir(η),    θ_d ~ Dir(α),    z_dn | θ_d ~ Cat(θ_d),    w_dn | z_dn = k ~ Cat(β_k)

The mean-field family is q(β_k) = Dir(λ_k), q(θ_d) = Dir(γ_d), q(z_dn) = Cat(φ_dn),
the parametrization of scikit-learn's `LatentDirichletAllocation` (`components_` is λ,
`_e_step` returns γ). With E[log θ_dk] = ψ(γ_dk) - ψ(Σ_j γ_dj) and E[log β_kv] =
ψ(λ_kv) - ψ(Σ_u λ_ku), coordinate ascent on the ELBO alternates

    local:   φ_dnk ∝ exp(E[log θ_dk] + E[log β_k,w_dn]),    γ_d = α + Σ_n c_dn φ_dn
    global:  λ_k = η + Σ_d Σ_n c_dn φ_dnk [w_dn = ·]

where a document is a bag of words: distinct word ids w_dn with counts c_dn. The
local step runs until the mean |Δγ_d| falls below a tolerance (`max_doc_update_iter`
and `mean_change_tol` as scikit-learn names them). Stochastic variational inference
(Hoffman, Blei & Bach 2010; Hoffman, Blei, Wang & Paisley 2013) replaces the global
step by a natural-gradient step on a minibatch B of the D documents,

    λ ← (1 - ρ_t) λ + ρ_t (η + (D / |B|) Σ_{d∈B} Σ_n c_dn φ_dn),    ρ_t = (τ_0 + t)^(-κ),  t = 1, 2, ...

A corpus is held padded, `Corpus(word_ids (D, L), counts (D, L))` with count 0 on the
padding, so that the local step is written for ONE document and vmapped over all.
Given γ_d and λ, the optimal φ_dn is the one above, so the ELBO is a function of
(λ, γ) alone (`elbo`, every term exact); scikit-learn's `_approx_bound` is the same
number, which is how `perplexity` agrees with its `perplexity`.

The hyperparameters α and η are held fixed (1/K by default, as in scikit-learn); they are
not learned here. Where this differs from scikit-learn: batch CAVI restarts every local step
from a fresh draw, as scikit-learn does, but keeps the previous γ if the restarted ones would
lower the ELBO (`restart_gammas`), so that its bound never goes down; the fit stops
on the change of the exact ELBO per word (`tol`), not of the perplexity every
`evaluate_every` iterations; the SVI minibatch's γ is drawn from JAX's PRNG; and τ_0 may be
any number >= 0 (scikit-learn asks for >= 1).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln

from lvmjax.errors import ArgumentError, ArgumentTypeError, DataError
from lvmjax.models._em import EMInfo, run_em
from lvmjax.types import Array, PRNGKey

__all__ = [
    "METHODS",
    "Corpus",
    "ElboTerms",
    "Params",
    "as_corpus",
    "cavi_step",
    "dirichlet_expectation",
    "document_elbo",
    "document_gammas",
    "document_topics",
    "e_step",
    "elbo",
    "elbo_terms",
    "fit",
    "initial_gammas",
    "local_step",
    "perplexity",
    "restart_gammas",
    "svi_step",
    "topic_word",
    "word_probabilities",
]

METHODS = ("cavi", "svi")


class Corpus(NamedTuple):
    """D documents as bags of words, padded to L distinct words each."""

    word_ids: Array  # shape=(D, L), int32: the distinct word ids of each document; 0 on the padding
    counts: Array  # shape=(D, L), float: c_dn, how often word_ids[d, n] occurs in document d; 0 on the padding


class Params(NamedTuple):
    """The variational topics and the (fixed) Dirichlet priors."""

    topic_word: Array  # shape=(K, V): λ, q(β_k) = Dir(λ_k)
    doc_topic_prior: Array  # shape=(): α, θ_d ~ Dir(α 1_K)
    topic_word_prior: Array  # shape=(): η, β_k ~ Dir(η 1_V)


class ElboTerms(NamedTuple):
    """The terms of the ELBO, each summed over the corpus; `elbo` is their sum."""

    log_p_words: Array  # shape=(): E_q[log p(w | z, β)] = Σ_dn c_dn Σ_k φ_dnk E[log β_k,w_dn]
    log_p_topics: Array  # shape=(): E_q[log p(z | θ)] = Σ_dn c_dn Σ_k φ_dnk E[log θ_dk]
    log_p_theta: Array  # shape=(): E_q[log p(θ | α)]
    log_p_beta: Array  # shape=(): E_q[log p(β | η)]
    entropy_z: Array  # shape=(): -E_q[log q(z)] = -Σ_dn c_dn Σ_k φ_dnk log φ_dnk
    entropy_theta: Array  # shape=(): -E_q[log q(θ)]
    entropy_beta: Array  # shape=(): -E_q[log q(β)]


# --- Input ---------------------------------------------------------------------------------


def _float_dtype(dtype: Any) -> Any:
    """The floating dtype counts of `dtype` are held in: their own if floating, JAX's default otherwise."""
    if np.issubdtype(dtype, np.floating):
        return jax.dtypes.canonicalize_dtype(dtype)  # float64 becomes float32 unless x64 is on
    return jnp.result_type(float)


def as_corpus(counts: Any) -> Corpus:
    """A document-word count matrix as a padded `Corpus`, checked.

    Args:
      counts: (D, V) counts c_dv of word v in document d: a jax or numpy array, or a
        `scipy.sparse` matrix; or a `Corpus`, returned as it is. Counts must be
        whole numbers >= 0, and every document needs at least one word.

    Returns:
      `Corpus` with L the most distinct words of any document; its counts are
      floating (the input's float dtype, or JAX's default float).
    """
    if isinstance(counts, Corpus):
        return counts
    if hasattr(counts, "tocsr") and hasattr(counts, "nnz"):  # scipy.sparse, without importing scipy here
        matrix = counts.tocsr(copy=True)  # a copy: the next lines change it in place
        shape = tuple(matrix.shape)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        values = np.asarray(matrix.data)
    else:
        if isinstance(counts, jax.core.Tracer):
            raise ArgumentTypeError(
                "counts must be concrete (not traced): build the Corpus with as_corpus outside jit."
            )
        if not isinstance(counts, (jax.Array, np.ndarray)):
            raise ArgumentTypeError(
                f"counts must be an array or a scipy.sparse matrix, got {type(counts).__name__}; "
                "convert it with np.asarray."
            )
        matrix = np.asarray(counts)
        shape = tuple(matrix.shape)
        values = matrix
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ArgumentTypeError(f"counts must hold integer or floating numbers, got dtype {values.dtype}.")
    if len(shape) != 2:
        raise ArgumentError(f"counts must be 2-D (D documents, V words), got shape {shape}.")
    if 0 in shape:
        raise ArgumentError(f"counts is empty (shape {shape}); it needs at least one document and one word.")
    _check_count_values(values)
    dtype = _float_dtype(values.dtype)
    if isinstance(matrix, np.ndarray):
        nonzero = matrix != 0
        lengths = nonzero.sum(axis=1)
    else:
        lengths = np.diff(matrix.indptr)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise DataError(
            f"{empty.size} documents have no words (their rows of counts are all zeros), for example document "
            f"{int(empty[0])}; drop empty documents first."
        )
    length = int(lengths.max())
    word_ids = np.zeros((shape[0], length), np.int32)
    padded = np.zeros((shape[0], length), np.float64)
    if isinstance(matrix, np.ndarray):
        for document in range(shape[0]):
            (ids,) = np.nonzero(nonzero[document])
            word_ids[document, : ids.size] = ids
            padded[document, : ids.size] = matrix[document, ids]
    else:
        for document in range(shape[0]):
            row = slice(matrix.indptr[document], matrix.indptr[document + 1])
            word_ids[document, : lengths[document]] = matrix.indices[row]
            padded[document, : lengths[document]] = matrix.data[row]
    return Corpus(jnp.asarray(word_ids), jnp.asarray(padded, dtype))


def _check_count_values(values: np.ndarray) -> None:
    if np.issubdtype(values.dtype, np.floating):
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            raise DataError(
                f"counts has {int(not_finite.sum())} NaN or infinite values; word counts must be finite numbers."
            )
    negative = values < 0
    if negative.any():
        example = values[negative].flat[0].item()
        raise DataError(
            f"counts has {int(negative.sum())} negative values (for example {example!r}); word counts are >= 0."
        )
    fractional = values != np.round(values)
    if fractional.any():
        example = values[fractional].flat[0].item()
        raise DataError(
            f"counts has {int(fractional.sum())} values that are not whole numbers (for example {example!r}); "
            "LDA models word counts."
        )


def _check_num_topics(num_topics: Any, vocabulary_size: int) -> int:
    if isinstance(num_topics, bool) or not isinstance(num_topics, (int, np.integer)):
        raise ArgumentTypeError(f"num_topics must be an int, got {type(num_topics).__name__}.")
    if num_topics < 1:
        raise ArgumentError(f"num_topics must be at least 1, got {num_topics}.")
    if num_topics > vocabulary_size:
        raise ArgumentError(
            f"num_topics={num_topics} is more than the vocabulary's {vocabulary_size} words; "
            f"use at most {vocabulary_size} topics."
        )
    return int(num_topics)


def _check_positive(value: Any, name: str) -> None:
    if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not value > 0 or not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number > 0, got {value!r}.")


# --- The model's expectations ----------------------------------------------------------------


def dirichlet_expectation(concentration: Array) -> Array:
    """E[log x] under x ~ Dir(concentration), along the last axis: ψ(a_k) - ψ(Σ_j a_j)."""
    return digamma(concentration) - digamma(jnp.sum(concentration, axis=-1, keepdims=True))


def topic_word(params: Params) -> Array:
    """E_q[β_k] = λ_k / Σ_v λ_kv: the topics, (K, V), each row summing to 1."""
    return params.topic_word / jnp.sum(params.topic_word, axis=1, keepdims=True)


def _dirichlet_log_normalizer(concentration: Array) -> Array:
    """log B(a) = Σ_k log Γ(a_k) - log Γ(Σ_k a_k), along the last axis."""
    return jnp.sum(gammaln(concentration), axis=-1) - gammaln(jnp.sum(concentration, axis=-1))


def _log_phi(elog_theta: Array, elog_beta_words: Array) -> Array:
    """log φ_nk = log softmax_k(E[log θ_k] + E[log β_k,w_n]), (L, K) from (K,) and (L, K)."""
    return jax.nn.log_softmax(elog_theta + elog_beta_words, axis=-1)


def elbo_terms(params: Params, corpus: Corpus, gammas: Array) -> ElboTerms:
    """The ELBO's terms at q(β) = Dir(λ), q(θ_d) = Dir(γ_d) and the optimal q(z_dn) given them.

    With φ_dnk ∝ exp(E[log θ_dk] + E[log β_k,w_dn]) (the local update), and A(a) = log B(a):

        E[log p(θ_d | α)] = -A(α 1_K) + (α - 1) Σ_k E[log θ_dk],    -E[log q(θ_d)] = A(γ_d) - Σ_k (γ_dk - 1) E[log θ_dk]
        E[log p(β_k | η)] = -A(η 1_V) + (η - 1) Σ_v E[log β_kv],    -E[log q(β_k)] = A(λ_k) - Σ_v (λ_kv - 1) E[log β_kv]

    and the word, topic and z-entropy terms of `ElboTerms` (Blei, Ng & Jordan 2003, appendix A.3).

    Args:
      params: λ (K, V), α, η.
      corpus: D documents.
      gammas: γ, (D, K).
    """
    num_topics, vocabulary_size = params.topic_word.shape
    alpha, eta, lam = params.doc_topic_prior, params.topic_word_prior, params.topic_word
    elog_beta = dirichlet_expectation(lam)  # (K, V)
    elog_theta = dirichlet_expectation(gammas)  # (D, K)
    elog_beta_words = elog_beta.T[corpus.word_ids]  # (D, L, K)
    log_phi = jax.vmap(_log_phi)(elog_theta, elog_beta_words)
    weights = corpus.counts[..., None] * jnp.exp(log_phi)  # c_dn φ_dnk
    num_docs = gammas.shape[0]
    return ElboTerms(
        log_p_words=jnp.sum(weights * elog_beta_words),
        log_p_topics=jnp.sum(weights * elog_theta[:, None, :]),
        log_p_theta=num_docs * -_dirichlet_log_normalizer(jnp.full((num_topics,), alpha))
        + (alpha - 1) * jnp.sum(elog_theta),
        log_p_beta=num_topics * -_dirichlet_log_normalizer(jnp.full((vocabulary_size,), eta))
        + (eta - 1) * jnp.sum(elog_beta),
        entropy_z=-jnp.sum(weights * log_phi),
        entropy_theta=jnp.sum(_dirichlet_log_normalizer(gammas)) - jnp.sum((gammas - 1) * elog_theta),
        entropy_beta=jnp.sum(_dirichlet_log_normalizer(lam)) - jnp.sum((lam - 1) * elog_beta),
    )


def elbo(params: Params, corpus: Corpus, gammas: Array) -> Array:
    """The exact ELBO, E_q[log p(w, z, θ, β)] - E_q[log q(z, θ, β)], summed over the corpus (see `elbo_terms`)."""
    return sum(elbo_terms(params, corpus, gammas), start=jnp.zeros((), gammas.dtype))


def document_elbo(params: Params, word_ids: Array, counts: Array, gamma: Array) -> Array:
    """ONE document's share of the ELBO at λ and γ_d, with φ_d optimal given them:

        ELBO_d = E[log p(w_d | z_d, β)] + E[log p(z_d | θ_d)] + E[log p(θ_d | α)] - E[log q(z_d)] - E[log q(θ_d)]

    so that ELBO = Σ_d ELBO_d + E[log p(β | η)] - E[log q(β)] (`elbo_terms`). For fixed λ the
    documents' γ_d are independent, and ELBO_d says which of two γ_d is better.

    Args:
      params: λ (K, V), α, η.
      word_ids, counts: (L,) the document's distinct words and their counts (0 on padding).
      gamma: (K,) γ_d.
    """
    num_topics = gamma.shape[0]
    elog_theta = dirichlet_expectation(gamma)
    elog_beta_words = dirichlet_expectation(params.topic_word).T[word_ids]  # (L, K)
    log_phi = _log_phi(elog_theta, elog_beta_words)
    weights = counts[:, None] * jnp.exp(log_phi)
    alpha = params.doc_topic_prior
    return (
        jnp.sum(weights * (elog_beta_words + elog_theta - log_phi))
        - _dirichlet_log_normalizer(jnp.full((num_topics,), alpha))
        + (alpha - 1) * jnp.sum(elog_theta)
        + _dirichlet_log_normalizer(gamma)
        - jnp.sum((gamma - 1) * elog_theta)
    )


def restart_gammas(
    key: PRNGKey | None,
    params: Params,
    corpus: Corpus,
    gammas: Array,
    max_doc_update_iter: int = 100,
    mean_change_tol: float | Array = 1e-3,
) -> Array:
    """The local steps restarted, kept if they raise the ELBO under λ, else the previous γ.

    Every document's local step restarts from a fresh Gamma(100, 1/100) draw (from ones without a key),
    as scikit-learn's batch fit restarts it every iteration; the restarted γ are kept if their ELBO
    under λ is at least that of the previous γ, so that coordinate ascent's ELBO never decreases.
    Warm starts (each local step from the previous γ) commit each document to the topics of the first
    iterations and stall in a poor optimum: on scipy-docs, K = 15, after 100 iterations at an ELBO of
    -5.967 nats per word against -5.564, a test perplexity of 848 against 528. Keeping, per document,
    the better of the two γ_d commits them too (516 after 20 iterations, against 504 restarting every
    document, and scikit-learn's 503).

    Args:
      key: of the restarts' draws; None restarts from ones.
      params: λ (K, V), α, η.
      corpus: D documents.
      gammas: the previous γ, (D, K).
      max_doc_update_iter, mean_change_tol: see `local_step`.

    Returns:
      γ, (D, K).
    """
    return _restart(key, params, corpus, gammas, max_doc_update_iter, mean_change_tol)[0]


def _restart(key, params, corpus, gammas, max_doc_update_iter, mean_change_tol):
    """`restart_gammas`, and the documents' terms of the ELBO at the γ it keeps, (D,)."""
    start = initial_gammas(key, gammas.shape[0], gammas.shape[1], gammas.dtype)
    restarted, _ = e_step(params, corpus, start, max_doc_update_iter, mean_change_tol)
    by_document = jax.vmap(document_elbo, in_axes=(None, 0, 0, 0))
    scores_restarted = by_document(params, corpus.word_ids, corpus.counts, restarted)
    scores_previous = by_document(params, corpus.word_ids, corpus.counts, gammas)
    keep = jnp.sum(scores_restarted) >= jnp.sum(scores_previous)
    return jnp.where(keep, restarted, gammas), jnp.where(keep, scores_restarted, scores_previous)


def _topic_terms(params: Params) -> Array:
    """The ELBO's global terms E[log p(β | η)] - E[log q(β)], the part that is not any document's."""
    num_topics, vocabulary_size = params.topic_word.shape
    eta, lam = params.topic_word_prior, params.topic_word
    elog_beta = dirichlet_expectation(lam)
    return (
        num_topics * -_dirichlet_log_normalizer(jnp.full((vocabulary_size,), eta))
        + (eta - 1) * jnp.sum(elog_beta)
        + jnp.sum(_dirichlet_log_normalizer(lam))
        - jnp.sum((lam - 1) * elog_beta)
    )


# --- The local step ------------------------------------------------------------------------


def local_step(
    params: Params,
    word_ids: Array,
    counts: Array,
    gamma: Array,
    max_doc_update_iter: int = 100,
    mean_change_tol: float | Array = 1e-3,
) -> Array:
    """γ_d of ONE document by the fixed-point iteration of the local update, from a starting γ.

    Each iteration sets φ_nk ∝ exp(E[log θ_k]) exp(E[log β_k,w_n]), then γ = α + Σ_n c_n φ_n, as
    scikit-learn's `_update_doc_distribution` does (in the exp domain, with eps added to the
    normalizer of φ), and stops once (1/K) Σ_k |Δγ_k| < mean_change_tol or after
    max_doc_update_iter iterations.

    Args:
      params: λ (K, V), α, η.
      word_ids: (L,) int: the document's distinct words.
      counts: (L,) their counts (0 on padding).
      gamma: (K,) the starting γ (scikit-learn's `transform` starts from ones, its `fit` from a
        Gamma(100, 1/100) draw; see `initial_gammas`).
      max_doc_update_iter: the most iterations (static).
      mean_change_tol: the tolerance on the mean |Δγ|.

    Returns:
      γ, (K,).
    """
    exp_elog_beta_words = jnp.exp(dirichlet_expectation(params.topic_word)).T[word_ids]  # (L, K)
    return _iterate_gamma(
        exp_elog_beta_words, counts, gamma, params.doc_topic_prior, max_doc_update_iter, mean_change_tol
    )


def _iterate_gamma(exp_elog_beta_words, counts, gamma, alpha, max_doc_update_iter, mean_change_tol):
    """The fixed-point iteration of γ, with exp(E[log β]) of the document's words as (L, K) rows."""
    start = (jnp.zeros((), jnp.int32), gamma, jnp.full((), jnp.inf, gamma.dtype))
    return _continue_gamma(exp_elog_beta_words, counts, *start, alpha, max_doc_update_iter, mean_change_tol)[1]


def _continue_gamma(exp_elog_beta_words, counts, iteration, gamma, change, alpha, cap, mean_change_tol):
    """The iteration continued from (its count, γ, its last mean |Δγ|) while count < cap and change >= tol;
    returns the three at the end."""
    eps = jnp.finfo(gamma.dtype).eps

    def update(gamma):
        exp_elog_theta = jnp.exp(dirichlet_expectation(gamma))
        normalizer = exp_elog_beta_words @ exp_elog_theta + eps  # Σ_k exp(E log θ_k + E log β_k,w_n), (L,)
        return alpha + exp_elog_theta * ((counts / normalizer) @ exp_elog_beta_words)

    def not_done(carry):
        iteration, _, change = carry
        return (iteration < cap) & (change >= mean_change_tol)

    def iterate(carry):
        iteration, gamma, _ = carry
        new_gamma = update(gamma)
        return iteration + 1, new_gamma, jnp.mean(jnp.abs(new_gamma - gamma))

    return jax.lax.while_loop(not_done, iterate, (iteration, gamma, change))


_FIRST_ITERATIONS = 16  # local iterations that every document of a batch runs together (most converge by then)
_ROUND_ITERATIONS = 16  # then, a round at a time, this many more for the documents still converging
_ROUND_SHARE = 8  # a round takes the first 1/8 of the batch's documents still converging


def _local_steps(exp_elog_beta_rows, corpus, gammas, alpha, max_doc_update_iter, mean_change_tol):
    """`local_step` of every document, as the vmapped loop computes it, but without making every document wait
    for the slowest.

    A vmapped `while_loop` runs all its documents as long as the slowest one: on scipy-docs the median document
    converges in 13 iterations and a few run to the cap of 100. So every document first runs at most
    `_FIRST_ITERATIONS` together; then, while any is still converging, the first 1/`_ROUND_SHARE` of those
    (a fixed number, so one program serves every round) are gathered, run `_ROUND_ITERATIONS` more, and
    scattered back. Each document runs exactly the iterations of its own loop, so γ is the same.
    """
    num_docs = gammas.shape[0]
    bucket = max(1, -(-num_docs // _ROUND_SHARE))

    def run(word_ids, counts, iteration, gamma, change, cap):
        return _continue_gamma(
            exp_elog_beta_rows[word_ids], counts, iteration, gamma, change, alpha, cap, mean_change_tol
        )

    batched = jax.vmap(run)
    iterations = jnp.zeros(num_docs, jnp.int32)
    changes = jnp.full(num_docs, jnp.inf, gammas.dtype)
    first = jnp.full(num_docs, min(_FIRST_ITERATIONS, max_doc_update_iter), jnp.int32)
    state = batched(corpus.word_ids, corpus.counts, iterations, gammas, changes, first)

    def converging(state):
        iterations, _, changes = state
        return (iterations < max_doc_update_iter) & (changes >= mean_change_tol)

    def round_of(state):
        iterations, gammas, changes = state
        chosen = jnp.argsort(~converging(state), stable=True)[:bucket]  # the converging documents first
        cap = jnp.minimum(iterations[chosen] + _ROUND_ITERATIONS, max_doc_update_iter)
        done = batched(
            corpus.word_ids[chosen], corpus.counts[chosen], iterations[chosen], gammas[chosen], changes[chosen], cap
        )
        return tuple(whole.at[chosen].set(part) for whole, part in zip(state, done, strict=True))

    return jax.lax.while_loop(lambda state: jnp.any(converging(state)), round_of, state)[1]


def initial_gammas(key: PRNGKey | None, num_docs: int, num_topics: int, dtype: Any) -> Array:
    """Starting γ, (D, K): ones without a key (scikit-learn's `transform`), a Gamma(100, 1/100) draw with one
    (its `fit`)."""
    if key is None:
        return jnp.ones((num_docs, num_topics), dtype)
    return jax.random.gamma(key, 100.0, (num_docs, num_topics), dtype) / 100


def e_step(
    params: Params,
    corpus: Corpus,
    gammas: Array,
    max_doc_update_iter: int = 100,
    mean_change_tol: float | Array = 1e-3,
) -> tuple[Array, Array]:
    """The local step of every document, vmapped, and the expected counts of the global update.

    Args:
      params: λ (K, V), α, η.
      corpus: D documents.
      gammas: the starting γ, (D, K).
      max_doc_update_iter, mean_change_tol: see `local_step`.

    Returns:
      (γ, (D, K); the statistics S_kv = Σ_d Σ_n c_dn φ_dnk [w_dn = v], (K, V), with φ from the final γ).
    """
    # exp(E[log β]) as (V, K) rows, so that a document's words are gathered and scattered as whole rows.
    exp_elog_beta_rows = jnp.exp(dirichlet_expectation(params.topic_word)).T
    eps = jnp.finfo(gammas.dtype).eps

    gammas = _local_steps(
        exp_elog_beta_rows, corpus, gammas, params.doc_topic_prior, max_doc_update_iter, mean_change_tol
    )

    def weights_of(word_ids, counts, gamma):
        words = exp_elog_beta_rows[word_ids]  # (L, K)
        exp_elog_theta = jnp.exp(dirichlet_expectation(gamma))
        normalizer = words @ exp_elog_theta + eps
        return words * exp_elog_theta * (counts / normalizer)[:, None]  # c_n φ_nk, (L, K)

    weights = jax.vmap(weights_of)(corpus.word_ids, corpus.counts, gammas)
    num_topics = params.topic_word.shape[0]
    rows = jnp.zeros_like(exp_elog_beta_rows).at[corpus.word_ids.reshape(-1)].add(weights.reshape(-1, num_topics))
    return gammas, rows.T


# --- Fitting -------------------------------------------------------------------------------


def cavi_step(
    params: Params,
    corpus: Corpus,
    gammas: Array,
    max_doc_update_iter: int = 100,
    mean_change_tol: float | Array = 1e-3,
) -> tuple[Params, Array, Array]:
    """One iteration of batch coordinate ascent: the local step of every document from `gammas`, the ELBO
    at (λ, the new γ), then λ = η + S.

    Returns:
      (θ with the new λ; the new γ, (D, K); the exact ELBO at the old λ and the new γ).
    """
    gammas, statistics = e_step(params, corpus, gammas, max_doc_update_iter, mean_change_tol)
    bound = elbo(params, corpus, gammas)
    return params._replace(topic_word=params.topic_word_prior + statistics), gammas, bound


def svi_step(
    params: Params,
    batch: Corpus,
    gammas: Array,
    step: Array,
    total_samples: int | Array,
    learning_offset: float | Array = 10.0,
    learning_decay: float | Array = 0.7,
    batch_size: int | Array | None = None,
    max_doc_update_iter: int = 100,
    mean_change_tol: float | Array = 1e-3,
) -> tuple[Params, Array]:
    """One natural-gradient step of stochastic VI (Hoffman et al. 2013, §3) on a minibatch B:

        λ ← (1 - ρ_t) λ + ρ_t (η + (D / |B|) S_B),    ρ_t = (τ_0 + t)^(-κ)

    as scikit-learn's online `_em_step` (whose t starts at 1). With B all D documents and ρ_t = 1
    (κ = 0) it is the CAVI update.

    Args:
      params: λ (K, V), α, η.
      batch: the minibatch's documents; padding documents (all counts 0) add nothing.
      gammas: their starting γ, (|B|, K).
      step: t, from 1.
      total_samples: D.
      learning_offset: τ_0.
      learning_decay: κ.
      batch_size: |B| (the real documents of `batch`); by default its number of rows.
      max_doc_update_iter, mean_change_tol: see `local_step`.

    Returns:
      (θ with the new λ, the minibatch's γ).
    """
    dtype = params.topic_word.dtype
    gammas, statistics = e_step(params, batch, gammas, max_doc_update_iter, mean_change_tol)
    size = batch.counts.shape[0] if batch_size is None else batch_size
    rho = jnp.power(jnp.asarray(learning_offset, dtype) + jnp.asarray(step, dtype), -jnp.asarray(learning_decay, dtype))
    ratio = jnp.asarray(total_samples, dtype) / jnp.asarray(size, dtype)
    target = params.topic_word_prior + ratio * statistics
    return params._replace(topic_word=(1 - rho) * params.topic_word + rho * target), gammas


def fit(
    key: PRNGKey,
    counts: Any,
    num_topics: int,
    method: str = "cavi",
    max_iter: int = 100,
    batch_size: int = 128,
    learning_offset: float = 10.0,
    learning_decay: float = 0.7,
    doc_topic_prior: float | None = None,
    topic_word_prior: float | None = None,
    tol: float = 1e-6,
    total_samples: int | None = None,
    max_doc_update_iter: int = 100,
    mean_change_tol: float = 1e-3,
) -> tuple[Params, EMInfo]:
    """Fits LDA by batch coordinate ascent ("cavi") or stochastic VI ("svi"), as one compiled program.

    λ starts from a Gamma(100, 1/100) draw, (K, V), and γ from another (scikit-learn's
    initialization). "cavi" iterates `restart_gammas` and the global step of `cavi_step`: every
    local step restarts from a fresh Gamma(100, 1/100) draw, as scikit-learn's does, the previous
    γ are kept instead if the restarted ones would lower the ELBO, and λ = η + S at the kept γ, so
    that the exact ELBO never decreases.
    "svi" makes `max_iter` passes over the documents in order, in minibatches of
    `batch_size` (the last one smaller when it does not divide D), each a `svi_step` whose
    local step starts from a fresh Gamma(100, 1/100) draw; ρ_t counts the minibatches from 1,
    as scikit-learn's `learning_method="online"`.

    Args:
      key: a PRNG key.
      counts: (D, V) word counts, dense or `scipy.sparse` (see `as_corpus`).
      num_topics: K, from 1 to V.
      method: "cavi" or "svi".
      max_iter: the most iterations ("cavi") or passes over the corpus ("svi").
      batch_size: |B| ("svi").
      learning_offset: τ_0 ("svi").
      learning_decay: κ ("svi").
      doc_topic_prior: α; by default 1/K.
      topic_word_prior: η; by default 1/K.
      tol: stop once the ELBO per word changes by less than tol between iterations (passes).
      total_samples: D in the SVI step; by default the number of documents.
      max_doc_update_iter, mean_change_tol: the local step's (see `local_step`).

    Returns:
      (θ, `EMInfo`), whose objective is the exact ELBO per word at each iterate λ_t (for "svi", at the
      start of each pass, with γ from a local step from ones).
    """
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {METHODS}, got {method!r}.")
    if isinstance(counts, Corpus):
        raise ArgumentTypeError("fit takes the (D, V) counts, which say V; a Corpus does not.")
    corpus = as_corpus(counts)
    vocabulary_size = int(np.shape(counts)[1])
    num_topics = _check_num_topics(num_topics, vocabulary_size)
    for name, value in (
        ("max_iter", max_iter),
        ("batch_size", batch_size),
        ("max_doc_update_iter", max_doc_update_iter),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ArgumentError(f"{name} must be an int >= 1, got {value!r}.")
    doc_topic_prior = 1 / num_topics if doc_topic_prior is None else doc_topic_prior
    topic_word_prior = 1 / num_topics if topic_word_prior is None else topic_word_prior
    _check_positive(doc_topic_prior, "doc_topic_prior")
    _check_positive(topic_word_prior, "topic_word_prior")
    if learning_offset < 0 or learning_decay < 0:
        raise ArgumentError(
            f"learning_offset and learning_decay must be >= 0, got {learning_offset!r} and {learning_decay!r}."
        )
    num_docs = corpus.counts.shape[0]
    if total_samples is not None and (isinstance(total_samples, bool) or not total_samples > 0):
        raise ArgumentError(f"total_samples must be a number of documents > 0, got {total_samples!r}.")
    dtype = corpus.counts.dtype
    priors = (jnp.asarray(doc_topic_prior, dtype), jnp.asarray(topic_word_prior, dtype))
    options = dict(max_iter=int(max_iter), max_doc_update_iter=int(max_doc_update_iter))
    scalars = tuple(jnp.asarray(value, dtype) for value in (tol, mean_change_tol))
    if method == "cavi":
        return _fit_cavi(
            key, corpus, *priors, *scalars, num_topics=num_topics, vocabulary_size=vocabulary_size, **options
        )
    total = num_docs if total_samples is None else total_samples
    batches, sizes = _minibatches(corpus, min(int(batch_size), num_docs))
    svi_scalars = tuple(jnp.asarray(value, dtype) for value in (learning_offset, learning_decay, total))
    return _fit_svi(
        key,
        corpus,
        batches,
        sizes,
        *priors,
        *scalars,
        *svi_scalars,
        num_topics=num_topics,
        vocabulary_size=vocabulary_size,
        **options,
    )


def _initial_params(key, num_topics, vocabulary_size, alpha, eta):
    topic_word = jax.random.gamma(key, 100.0, (num_topics, vocabulary_size), alpha.dtype) / 100
    return Params(topic_word, alpha, eta)


_STATIC = ("num_topics", "vocabulary_size", "max_iter", "max_doc_update_iter")  # shapes and loop lengths


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit_cavi(
    key, corpus, alpha, eta, tol, mean_change_tol, num_topics, vocabulary_size, max_iter, max_doc_update_iter
):
    num_words = jnp.sum(corpus.counts)

    def step(state):
        # One local step per iteration: the restarted γ if they raise the ELBO, else the previous ones, then
        # λ = η + S at those γ (no further local iterations), and the ELBO from the kept γ's own terms.
        params, gammas, key = state
        key, restart_key = jax.random.split(key)
        gammas, by_document = _restart(restart_key, params, corpus, gammas, max_doc_update_iter, mean_change_tol)
        bound = jnp.sum(by_document) + _topic_terms(params)
        _, statistics = e_step(params, corpus, gammas, 0, mean_change_tol)
        params = params._replace(topic_word=params.topic_word_prior + statistics)
        return (params, gammas, key), bound / num_words

    params_key, gamma_key, key = jax.random.split(key, 3)
    params = _initial_params(params_key, num_topics, vocabulary_size, alpha, eta)
    gammas = initial_gammas(gamma_key, corpus.counts.shape[0], num_topics, alpha.dtype)
    (params, _, _), info = run_em(step, (params, gammas, key), max_iter, tol)
    return params, info


def _minibatches(corpus: Corpus, batch_size: int) -> tuple[Corpus, Array]:
    """The documents in order as (num_batches, batch_size, L), the last batch padded with empty documents,
    and the number of real documents of each batch."""
    num_docs, length = corpus.counts.shape
    num_batches = -(-num_docs // batch_size)
    padding = num_batches * batch_size - num_docs

    def pad(array):
        return jnp.concatenate([array, jnp.zeros((padding, length), array.dtype)]).reshape(
            num_batches, batch_size, length
        )

    sizes = np.full(num_batches, batch_size, np.int32)
    sizes[-1] = batch_size - padding
    return Corpus(pad(corpus.word_ids), pad(corpus.counts)), jnp.asarray(sizes)


def _svi_program(
    key,
    corpus,
    batches,
    sizes,
    alpha,
    eta,
    tol,
    mean_change_tol,
    learning_offset,
    learning_decay,
    total_samples,
    *,
    num_topics,
    vocabulary_size,
    max_iter,
    max_doc_update_iter,
):
    params_key, key = jax.random.split(key)
    params = _initial_params(params_key, num_topics, vocabulary_size, alpha, eta)
    num_batches, batch_size = sizes.shape[0], batches.counts.shape[1]
    num_words = jnp.sum(corpus.counts)
    ones = initial_gammas(None, corpus.counts.shape[0], num_topics, alpha.dtype)

    def minibatch(carry, inputs):
        params, step = carry
        batch_key, word_ids, counts, size = inputs
        gammas = initial_gammas(batch_key, batch_size, num_topics, alpha.dtype)
        params, _ = svi_step(
            params,
            Corpus(word_ids, counts),
            gammas,
            step,
            total_samples,
            learning_offset,
            learning_decay,
            size,
            max_doc_update_iter,
            mean_change_tol,
        )
        return (params, step + 1), None

    def epoch(state):
        params, step, key = state
        key, epoch_key = jax.random.split(key)
        gammas, _ = e_step(params, corpus, ones, max_doc_update_iter, mean_change_tol)
        bound = elbo(params, corpus, gammas)
        inputs = (jax.random.split(epoch_key, num_batches), batches.word_ids, batches.counts, sizes)
        (params, step), _ = jax.lax.scan(minibatch, (params, step), inputs)
        return (params, step, key), bound / num_words

    (params, _, _), info = run_em(epoch, (params, jnp.ones((), jnp.int32), key), max_iter, tol)
    return params, info


_fit_svi = jax.jit(_svi_program, static_argnames=_STATIC)


# --- Using a fitted model ------------------------------------------------------------------


def _check_vocabulary(params: Params, counts: Any) -> None:
    """Raises unless (D, V) counts have the V words of λ (a `Corpus` does not say its V)."""
    vocabulary_size = params.topic_word.shape[1]
    if not isinstance(counts, Corpus) and len(np.shape(counts)) == 2 and np.shape(counts)[1] != vocabulary_size:
        raise ArgumentError(
            f"counts has {np.shape(counts)[1]} words (columns), but the topics are over {vocabulary_size}."
        )


@functools.partial(jax.jit, static_argnames="max_doc_update_iter")
def _document_gammas(params, corpus, max_doc_update_iter, mean_change_tol):
    ones = initial_gammas(None, corpus.counts.shape[0], params.topic_word.shape[0], params.topic_word.dtype)
    return e_step(params, corpus, ones, max_doc_update_iter, mean_change_tol)[0]


def document_gammas(
    params: Params, counts: Any, max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3
) -> Array:
    """γ_d of each document by the local step started at ones: scikit-learn's `_unnormalized_transform`.

    Args:
      params: λ (K, V), α, η.
      counts: (D, V) word counts (dense or `scipy.sparse`) or a `Corpus`.
      max_doc_update_iter, mean_change_tol: see `local_step`.

    Returns:
      γ, (D, K).
    """
    _check_vocabulary(params, counts)
    corpus = as_corpus(counts)
    tol = jnp.asarray(mean_change_tol, params.topic_word.dtype)
    return _document_gammas(params, corpus, int(max_doc_update_iter), tol)


def document_topics(
    params: Params, counts: Any, max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3
) -> Array:
    """E_q[θ_d] = γ_d / Σ_k γ_dk, (D, K), rows summing to 1, with γ from `document_gammas`: scikit-learn's
    `transform`. Deterministic (γ starts at ones), so it takes no key."""
    gammas = document_gammas(params, counts, max_doc_update_iter, mean_change_tol)
    return gammas / jnp.sum(gammas, axis=1, keepdims=True)


@jax.jit
def _perplexity(params, corpus, gammas):
    return jnp.exp(-elbo(params, corpus, gammas) / jnp.sum(corpus.counts))


def perplexity(params: Params, counts: Any, max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3) -> Array:
    """exp(-ELBO / N), N the number of words of the corpus, with γ from `document_gammas`.

    This is scikit-learn's `perplexity(X)` (its `_approx_bound` with `sub_sampling=False` is this
    ELBO, with φ optimal given γ and λ).
    """
    _check_vocabulary(params, counts)
    corpus = as_corpus(counts)
    gammas = document_gammas(params, corpus, max_doc_update_iter, mean_change_tol)
    return _perplexity(params, corpus, gammas)


def word_probabilities(
    params: Params, counts: Any, max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3
) -> Array:
    """p(w = v | document d) ≈ Σ_k E_q[θ_dk] E_q[β_kv], (D, V), rows summing to 1: each document's
    predictive word distribution, with E[θ_d] from `document_topics` (document completion scores the
    held-out words by it, `lvmjax.models.topics.completion_perplexity`)."""
    return document_topics(params, counts, max_doc_update_iter, mean_change_tol) @ topic_word(params)

"""ProdLDA (Srivastava & Sutton 2017, "Autoencoding Variational Inference for Topic Models"): a topic model
trained as a variational autoencoder.

K topics over a vocabulary of V words; document d is its word counts n_d (V,), N_d = Σ_v n_dv words:

    z_d ~ N(μ_0, diag σ_0²),    θ_d = softmax(z_d),    n_d | θ_d ~ Mult(N_d, softmax(βᵀ θ_d))

The prior is the Laplace approximation, in the softmax basis, to θ ~ Dir(α) (MacKay 1998, used by the paper):

    μ_0k = log α_k − (1/K) Σ_j log α_j,    σ_0k² = (1/α_k)(1 − 2/K) + (1/K²) Σ_j 1/α_j

The decoder is a product of experts: p(w | θ) ∝ Π_k exp(β_kw)^θ_k, i.e. softmax(βᵀ θ), with β an
unnormalized (K, V) matrix; topic k is the expert softmax(β_k), the word distribution of θ = e_k.
(LDA's mixture Σ_k θ_k softmax(β_k) is replaced by a weighted geometric mean; the paper finds the topics
more coherent for it.) The encoder q(z | n) = N(μ_φ(n), diag σ_φ(n)²) is an MLP of the raw counts
(`networks.MLPEncoder`). Per document, reparameterized (z = μ + σ ε) with a closed-form KL,

    ELBO(n) = E_q[Σ_v n_v log softmax(βᵀ softmax(z))_v] − KL(q(z | n) ‖ N(μ_0, diag σ_0²))  <=  log p(n) − log C(n)

where C(n) = N! / Π_v n_v! is the multinomial coefficient, left out as the paper does (it does not depend
on the parameters). Training is minibatch gradient ascent with Adam (`training.gradient_ascent` and
`training.make_epoch`), as the VAE of `lvmjax.amortized`.

Where this differs from the paper: there is no batch normalization (the paper normalizes the encoder's
outputs and βᵀθ, which helps against component collapse on large corpora), no dropout, and the decoder has no
bias (so p(w | θ = e_k) is exactly `topic_word`). The corpus is held as a dense (D, V) array on the device (a
`scipy.sparse` matrix is densified once), which is fine for vocabularies of a few thousand words.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lvmjax import networks, training
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.models import lda
from lvmjax.types import Array, PRNGKey

__all__ = [
    "ENCODER_ACTIVATION",
    "FitInfo",
    "Params",
    "as_counts",
    "document_elbo",
    "document_topics",
    "elbo",
    "fit",
    "init",
    "log_likelihood",
    "logistic_normal_prior",
    "perplexity",
    "posterior",
    "prior",
    "topic_word",
    "word_probabilities",
]

ENCODER_ACTIVATION = "softplus"
"""The encoder's hidden nonlinearity, the paper's."""


class Params(NamedTuple):
    """The encoder φ, the topics β, and the (fixed, not learned) Dirichlet prior α."""

    encoder: Any  # Flax parameters of networks.MLPEncoder(K, hidden): n (V,) -> (μ_φ(n), log σ_φ(n)), each (K,)
    topic_word: Array  # shape=(K, V): β, unnormalized; topic k is softmax(β_k)
    doc_topic_prior: Array  # shape=(K,): α, approximated by the logistic normal `logistic_normal_prior(α)`


class FitInfo(NamedTuple):
    """The training history, one entry per epoch."""

    elbo_per_word: (
        Array  # shape=(E,): Σ ELBO_d / Σ N_d over the epoch's minibatches, each at the params before its step
    )
    grad_norm: Array  # shape=(E,): the mean over the epoch's steps of the gradient's global norm
    skipped: Array  # shape=(E,), int32: the steps skipped as non-finite


# --- The model -------------------------------------------------------------------------------


def logistic_normal_prior(doc_topic_prior: Array) -> distrax.MultivariateNormalDiag:
    """The Laplace approximation to Dir(α) in the softmax basis: z ~ N(μ_0, diag σ_0²), θ = softmax(z), with

        μ_0k = log α_k − (1/K) Σ_j log α_j,    σ_0k² = (1/α_k)(1 − 2/K) + (1/K²) Σ_j 1/α_j

    (MacKay 1998; Srivastava & Sutton 2017). A symmetric α has μ_0 = 0.

    Args:
      doc_topic_prior: α, (K,), positive.
    """
    num_topics = doc_topic_prior.shape[-1]
    log_alpha = jnp.log(doc_topic_prior)
    mean = log_alpha - jnp.mean(log_alpha)
    variance = (1 / doc_topic_prior) * (1 - 2 / num_topics) + jnp.sum(1 / doc_topic_prior) / num_topics**2
    return distrax.MultivariateNormalDiag(mean, jnp.sqrt(variance))


def prior(params: Params) -> distrax.MultivariateNormalDiag:
    """p(z) = `logistic_normal_prior(α)`, with α = params.doc_topic_prior."""
    return logistic_normal_prior(params.doc_topic_prior)


def _encoder(params: Params) -> networks.MLPEncoder:
    """The `MLPEncoder` whose parameters `params.encoder` are: its hidden widths read from the kernels' shapes."""
    layers = params.encoder["params"]
    hidden = tuple(layers[f"Dense_{index}"]["kernel"].shape[1] for index in range(len(layers) - 1))
    return networks.MLPEncoder(params.topic_word.shape[0], hidden, ENCODER_ACTIVATION)


def posterior(params: Params, word_counts: Array) -> distrax.MultivariateNormalDiag:
    """q(z | n) = N(μ_φ(n), diag σ_φ(n)²) of ONE document, n its word counts (V,)."""
    mean, log_scale = cast(tuple[Array, Array], _encoder(params).apply(params.encoder, word_counts))
    return distrax.MultivariateNormalDiag(mean, jnp.exp(log_scale))


def word_probabilities(params: Params, theta: Array) -> Array:
    """p(w | θ) = softmax(βᵀ θ), (V,), for topic proportions θ (K,): the product of the experts softmax(β_k)^θ_k,
    renormalized."""
    return jax.nn.softmax(theta @ params.topic_word)


def log_likelihood(params: Params, word_counts: Array, z: Array) -> Array:
    """log p(n | z) + log C(n) = Σ_v n_v log softmax(βᵀ softmax(z))_v: the multinomial log-likelihood of ONE
    document without its coefficient C(n) = N! / Π_v n_v!.

    Args:
      params: β (K, V) is read.
      word_counts: n, (V,).
      z: the logistic-normal latent, (K,); θ = softmax(z).
    """
    return jnp.sum(word_counts * jax.nn.log_softmax(jax.nn.softmax(z) @ params.topic_word))


def document_elbo(key: PRNGKey, params: Params, word_counts: Array, num_samples: int = 1) -> Array:
    """The ELBO of ONE document, reparameterized, with the KL in closed form (distrax):

        ELBO(n) = (1/S) Σ_s Σ_v n_v log softmax(βᵀ softmax(z_s))_v − KL(q(z | n) ‖ p(z)),   z_s = μ_φ(n) + σ_φ(n) ε_s

    an unbiased estimate of E_q[log p(n | z) + log p(z) − log q(z | n)] + log C(n) (see `log_likelihood`).

    Args:
      key: a PRNG key.
      params: φ, β, α.
      word_counts: n, (V,).
      num_samples: S, static.
    """
    q = posterior(params, word_counts)
    z = q.sample(seed=key, sample_shape=num_samples)  # (S, K), differentiable in φ
    reconstruction = jnp.mean(jax.vmap(lambda z_s: log_likelihood(params, word_counts, z_s))(z))
    return reconstruction - q.kl_divergence(prior(params))


def topic_word(params: Params) -> Array:
    """The topics softmax(β_k), (K, V), each row summing to 1: p(w | θ = e_k), ProdLDA's experts."""
    return jax.nn.softmax(params.topic_word, axis=1)


# --- Input -----------------------------------------------------------------------------------


def as_counts(counts: Any, vocabulary_size: int | None = None) -> Array:
    """(D, V) word counts, checked, as a dense floating array.

    Args:
      counts: a jax or numpy array or a `scipy.sparse` matrix of whole numbers >= 0, every document
        (row) with at least one word; checked by `lda.as_corpus`, and densified.
      vocabulary_size: V the counts must have, if given (the topics' V).
    """
    if isinstance(counts, lda.Corpus):
        raise ArgumentTypeError("counts must be the (D, V) counts, which say V; a Corpus does not.")
    corpus = lda.as_corpus(counts)  # every check of the counts: type, shape, values, empty documents
    shape = tuple(np.shape(counts))
    if vocabulary_size is not None and shape[1] != vocabulary_size:
        raise ArgumentError(f"counts has {shape[1]} words (columns), but the topics are over {vocabulary_size}.")
    rows = jnp.arange(shape[0])[:, None]
    return jnp.zeros(shape, corpus.counts.dtype).at[rows, corpus.word_ids].add(corpus.counts)  # 0 on the padding


def _check_vocabulary(params: Params, counts: Any) -> Array:
    if not isinstance(params, Params):
        raise ArgumentTypeError(f"params must be prodlda.Params, got {type(params).__name__}.")
    return as_counts(counts, params.topic_word.shape[1])


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"{name} must be an int >= 1, got {value!r}.")
    return int(value)


# --- Fitting ---------------------------------------------------------------------------------


def _training_objective(key: PRNGKey, params: Params, word_counts: Array) -> Array:
    """`document_elbo` with α held fixed: its gradient is zero, so Adam leaves it as it is."""
    fixed = params._replace(doc_topic_prior=jax.lax.stop_gradient(params.doc_topic_prior))
    return document_elbo(key, fixed, word_counts)


@functools.cache
def _programs(batch_size: int, learning_rate: float, momentum: float) -> tuple[Callable, Callable]:
    """The jitted (init, epoch) of one optimizer and batch size, built once however often `fit` is called."""
    trainer = training.gradient_ascent(_training_objective, optax.adam(learning_rate, b1=momentum))

    def step(state, key, batch):
        state, info = trainer.step(state, key, batch)
        return state, (info, jnp.sum(batch))  # the minibatch's words, for the ELBO per word

    epoch = training.make_epoch(step, batch_size)

    def run_epoch(state, key, counts):
        state, (info, words) = epoch(state, key, counts)
        elbo_per_word = jnp.sum(info.objective) * batch_size / jnp.sum(words)
        return state, (elbo_per_word, jnp.mean(info.grad_norm), jnp.sum(info.skipped).astype(jnp.int32))

    return jax.jit(trainer.init), jax.jit(run_epoch)


def _initial_params(key: PRNGKey, num_topics: int, vocabulary_size: int, hidden: tuple[int, ...], alpha: Array):
    key_encoder, key_topics = jax.random.split(key)
    encoder = networks.MLPEncoder(num_topics, hidden, ENCODER_ACTIVATION)
    dtype = alpha.dtype
    encoder_params = encoder.init(key_encoder, jnp.zeros(vocabulary_size, dtype))
    # β is initialized as the kernel of a Dense(K -> V) layer would be: LeCun normal, standard deviation 1/√K.
    topics = jax.random.normal(key_topics, (num_topics, vocabulary_size), dtype) / np.sqrt(num_topics)
    return Params(encoder_params, topics, alpha)


def init(
    key: PRNGKey,
    vocabulary_size: int,
    num_topics: int,
    hidden: Sequence[int] = (100, 100),
    doc_topic_prior: float | Sequence[float] | None = None,
    dtype: Any = jnp.float32,
) -> Params:
    """The starting `Params` of `fit`: the encoder's Flax initialization, β ~ N(0, 1/K) (as the kernel of a
    Dense(K → V) layer), and α (by default 1 for every topic, the paper's).

    Args:
      key: a PRNG key.
      vocabulary_size: V.
      num_topics: K, from 1 to V.
      hidden: the encoder's hidden widths.
      doc_topic_prior: α, one number > 0 for every topic or one per topic (K,).
      dtype: the float type of every parameter.
    """
    num_topics = lda._check_num_topics(num_topics, vocabulary_size)
    hidden = tuple(hidden)
    if any(isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1 for width in hidden):
        raise ArgumentError(
            f"hidden must be the widths of the hidden layers, positive ints such as (100, 100), got {hidden!r}."
        )
    alpha = np.asarray(1.0 if doc_topic_prior is None else doc_topic_prior)
    if alpha.shape not in ((), (num_topics,)) or not np.issubdtype(alpha.dtype, np.number) or alpha.dtype == bool:
        raise ArgumentError(f"doc_topic_prior must be one number > 0 or {num_topics} of them, got {doc_topic_prior!r}.")
    alpha = np.broadcast_to(alpha.astype(np.float64), (num_topics,))
    if not np.all(np.isfinite(alpha) & (alpha > 0)):
        raise ArgumentError(f"doc_topic_prior must be one number > 0 or {num_topics} of them, got {doc_topic_prior!r}.")
    return _initial_params(key, num_topics, vocabulary_size, hidden, jnp.asarray(alpha, dtype))


def fit(
    key: PRNGKey,
    counts: Any,
    num_topics: int,
    num_epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    momentum: float = 0.99,
    hidden: Sequence[int] = (100, 100),
    doc_topic_prior: float | Sequence[float] | None = None,
    progress: Callable[[int, float], Any] | None = None,
) -> tuple[Params, FitInfo]:
    """Fits ProdLDA by minibatch gradient ascent on Σ_d ELBO(n_d) with Adam (Srivastava & Sutton 2017).

    Each epoch is one compiled `training.make_epoch` over shuffled minibatches (the last D mod B documents
    of each permutation sit the epoch out), each step Adam on the minibatch mean of `document_elbo`
    (one sample), guarded against non-finite steps. The defaults are the paper's: Adam with learning
    rate 0.002 and a high first-moment weight β_1 = 0.99, two hidden layers of 100, α = 1 for every topic.

    Args:
      key: a PRNG key.
      counts: (D, V) word counts, dense or `scipy.sparse` (see `as_counts`).
      num_topics: K, from 1 to V.
      num_epochs: E, passes over the corpus.
      batch_size: B; the corpus's D when it has fewer documents.
      learning_rate: Adam's step size.
      momentum: Adam's β_1, in [0, 1).
      hidden: the encoder's hidden widths.
      doc_topic_prior: α, a number for every topic or one per topic (K,); by default 1 (the paper's).
      progress: called `progress(epoch, elbo_per_word)` after each epoch (from 1), if given.

    Returns:
      (`Params`, `FitInfo`).
    """
    counts = as_counts(counts)
    num_docs, vocabulary_size = counts.shape
    num_topics = lda._check_num_topics(num_topics, vocabulary_size)
    num_epochs = _check_count(num_epochs, "num_epochs")
    batch_size = min(_check_count(batch_size, "batch_size"), num_docs)
    lda._check_positive(learning_rate, "learning_rate")
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum < 1:
        raise ArgumentError(f"momentum (Adam's b1) must be a number in [0, 1), got {momentum!r}.")
    init_key, key = jax.random.split(key)
    params = init(init_key, vocabulary_size, num_topics, hidden, doc_topic_prior, counts.dtype)
    init_state, run_epoch = _programs(batch_size, float(learning_rate), float(momentum))
    state = init_state(init_key, params)
    history = []
    for epoch, epoch_key in enumerate(jax.random.split(key, num_epochs), start=1):
        state, summary = run_epoch(state, epoch_key, counts)
        history.append(summary)
        if progress is not None:
            progress(epoch, float(summary[0]))
    elbo_per_word, grad_norm, skipped = (jnp.stack(column) for column in zip(*history, strict=True))
    return state.params, FitInfo(elbo_per_word, grad_norm, skipped)


# --- Using a fitted model --------------------------------------------------------------------


@jax.jit
def _document_topics(params, counts):
    return jax.nn.softmax(jax.vmap(lambda n: posterior(params, n).mean())(counts), axis=-1)


def document_topics(params: Params, counts: Any) -> Array:
    """θ_d = softmax(μ_φ(n_d)), (D, K), rows summing to 1: the topic proportions at the encoder's mean.

    Args:
      params: a fitted `Params`.
      counts: (D, V) word counts, dense or `scipy.sparse`.
    """
    return _document_topics(params, _check_vocabulary(params, counts))


@functools.partial(jax.jit, static_argnames="num_samples")
def _elbo(key, params, counts, num_samples):
    keys = jax.random.split(key, counts.shape[0])
    return jax.vmap(document_elbo, in_axes=(0, None, 0, None))(keys, params, counts, num_samples)


def elbo(key: PRNGKey, params: Params, counts: Any, num_samples: int = 1) -> Array:
    """`document_elbo` of every document, (D,), each with S = num_samples draws from q(z | n_d)."""
    counts = _check_vocabulary(params, counts)
    return _elbo(key, params, counts, _check_count(num_samples, "num_samples"))


def perplexity(key: PRNGKey, params: Params, counts: Any, num_samples: int = 16) -> Array:
    """exp(−Σ_d ELBO_d / Σ_d N_d), the paper's perplexity, with ELBO_d from `elbo`.

    As the ELBO is a lower bound on log p(n_d) − log C(n_d), this is an upper bound on the perplexity
    exp(−Σ_d log p(w_d) / Σ_d N_d) of the documents' word sequences (up to the Monte Carlo error of the
    reconstruction term, which `num_samples` reduces). It is >= 1: each word's probability is at most 1.
    """
    counts = _check_vocabulary(params, counts)
    bounds = _elbo(key, params, counts, _check_count(num_samples, "num_samples"))
    return jnp.exp(-jnp.sum(bounds) / jnp.sum(counts))

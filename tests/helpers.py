"""Helpers the tests share: small reference models whose answers are known exactly, and a statistical check.

Test modules import them with `from helpers import ...` (pytest puts tests/ on sys.path, as it does for
conftest.py); conftest.py holds only the fixtures, hooks and the XLA flags.
"""

import distrax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from lvmjax import LatentVariableModel
from lvmjax.amortized import AmortizedModel
from lvmjax.models import gaussian_mixture, linear_gaussian
from lvmjax.variational import mean_field_gaussian

__all__ = [
    "assert_within_stderr",
    "binary_latent_model",
    "linear_bernoulli_vae",
    "make_binary_latent",
    "make_gaussian_mixture",
    "make_linear_gaussian",
    "make_topic_corpus",
    "matched_cosines",
]


def make_linear_gaussian(dtype=jnp.float32, data_dim=4, latent_dim=2, noise=0.3, seed=0):
    """A factor-analysis model with a concentrated posterior, and one datapoint drawn from it."""
    rng = np.random.default_rng(seed)
    params = linear_gaussian.Params(
        weight=jnp.asarray(rng.normal(size=(data_dim, latent_dim)), dtype),
        bias=jnp.asarray(rng.normal(size=data_dim), dtype),
        noise_variance=jnp.asarray(noise * rng.uniform(0.5, 1.5, size=data_dim), dtype),
    )
    z = rng.normal(size=latent_dim)
    x = params.weight @ jnp.asarray(z, dtype) + params.bias
    x = x + jnp.sqrt(params.noise_variance) * jnp.asarray(rng.normal(size=data_dim), dtype)
    return params, x


def make_gaussian_mixture(dtype=jnp.float32, num_components=3, data_dim=2, seed=1):
    rng = np.random.default_rng(seed)
    tril = np.tril(rng.normal(size=(num_components, data_dim, data_dim)) * 0.3)
    tril[:, np.arange(data_dim), np.arange(data_dim)] = rng.uniform(0.5, 1.2, (num_components, data_dim))
    params = gaussian_mixture.Params(
        logits=jnp.asarray(rng.normal(size=num_components), dtype),
        means=jnp.asarray(2.0 * rng.normal(size=(num_components, data_dim)), dtype),
        scale_tril=jnp.asarray(tril, dtype),
    )
    x = jnp.asarray(rng.normal(size=data_dim), dtype)
    return params, x


def _binary_prior(params):
    # Float samples: distrax's Bernoulli.log_prob of integer samples needs the
    # standard dtype promotion, which these tests make strict.
    logits = params["prior_logits"]
    return distrax.Independent(distrax.Bernoulli(logits=logits, dtype=logits.dtype), 1)


def _binary_likelihood(params, z):
    mean = params["weight"] @ z.astype(params["weight"].dtype) + params["bias"]
    return distrax.MultivariateNormalDiag(mean, params["scale"])


# z ∈ {0, 1}^d with independent Bernoulli priors, x | z ~ N(W z + b, diag(scale²)).
binary_latent_model = LatentVariableModel(_binary_prior, _binary_likelihood)


def make_binary_latent(dtype=jnp.float32, latent_dim=5, data_dim=3, seed=2):
    rng = np.random.default_rng(seed)
    params = {
        "prior_logits": jnp.asarray(rng.normal(size=latent_dim), dtype),
        "weight": jnp.asarray(rng.normal(size=(data_dim, latent_dim)), dtype),
        "bias": jnp.asarray(rng.normal(size=data_dim), dtype),
        "scale": jnp.asarray(rng.uniform(0.3, 0.6, size=data_dim), dtype),
    }
    x = jnp.asarray(rng.normal(size=data_dim), dtype)
    return params, x


def assert_within_stderr(estimates, exact, num_stderr=4.0, floor=0.0):
    """Asserts that the mean of `estimates` (leading axis: repetitions) is within
    `num_stderr` standard errors of `exact`, elementwise."""
    estimates = np.asarray(estimates, np.float64)
    mean = estimates.mean(axis=0)
    stderr = estimates.std(axis=0, ddof=1) / np.sqrt(estimates.shape[0])
    bound = num_stderr * stderr + floor
    assert np.all(np.abs(mean - np.asarray(exact)) <= bound), (
        f"mean {mean} vs exact {exact}: |difference| {np.abs(mean - exact)} exceeds {bound}"
    )


def linear_bernoulli_vae(data_dim=16, latent_dim=2, seed=0):
    """A Bernoulli VAE with linear networks in place of `make_vae`'s Flax ones (same likelihood, same family):

    q(z | x) = N(A x, diag(exp(C x - 1)²)),    z ~ N(0, I),    x | z ~ Π_d Bernoulli(σ(W z + b)_d)
    """

    def prior(params):
        return distrax.MultivariateNormalDiag(jnp.zeros(latent_dim), jnp.ones(latent_dim))

    def likelihood(params, z):
        logits = params["decoder"]["weight"] @ z + params["decoder"]["bias"]
        return distrax.Independent(distrax.Bernoulli(logits=logits, dtype=logits.dtype), 1)

    def encoder_output(params, x):
        return {"mean": params["encoder"]["mean"] @ x, "log_scale": params["encoder"]["log_scale"] @ x - 1.0}

    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.normal(size=shape), jnp.float32)

    params = {
        "encoder": {
            "mean": normal(latent_dim, data_dim, scale=0.5),
            "log_scale": normal(latent_dim, data_dim, scale=0.1),
        },
        "decoder": {"weight": normal(data_dim, latent_dim, scale=2.0), "bias": normal(data_dim)},
    }
    vae = AmortizedModel(
        LatentVariableModel(prior, likelihood), mean_field_gaussian(latent_dim), encoder_output, None, latent_dim
    )
    return vae, params


TOPIC_CORPUS = {"num_topics": 3, "vocabulary": 30, "num_docs": 200, "doc_length": 80}  # of `make_topic_corpus`


def make_topic_corpus(dtype=np.float64, seed=0):
    """K = 3 topics over V = 30 words, each with 90% of its mass on its own 10 words, and D = 200 documents
    of 80 words drawn from LDA (θ_d ~ Dir(0.5)): (counts (D, V), topics (K, V))."""
    num_topics, vocabulary, num_docs, doc_length = TOPIC_CORPUS.values()
    rng = np.random.default_rng(seed)
    topics = np.full((num_topics, vocabulary), 0.1 / vocabulary)
    for k in range(num_topics):
        topics[k, 10 * k : 10 * (k + 1)] += 0.9 / 10
    topics /= topics.sum(axis=1, keepdims=True)
    proportions = rng.dirichlet(np.full(num_topics, 0.5), num_docs)
    counts = np.stack([rng.multinomial(doc_length, p @ topics) for p in proportions]).astype(dtype)
    return counts, topics


def matched_cosines(estimated, true):
    """Cosine similarity of each true topic with the estimated topic the Hungarian assignment matches to it."""
    estimated = estimated / np.linalg.norm(estimated, axis=1, keepdims=True)
    true = true / np.linalg.norm(true, axis=1, keepdims=True)
    cosines = true @ estimated.T
    rows, columns = linear_sum_assignment(-cosines)
    return cosines[rows, columns]

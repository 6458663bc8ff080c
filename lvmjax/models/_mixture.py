"""What the mixture models share: the structure of a finite mixture, and k-means++ seeding.

    z ~ Categorical(π),    x | z = k ~ p_k(x),    π = softmax(logits)

The latent is one of K components, so the marginal and the posterior are finite
sums (seed text, §2.2), whatever the components are:

    p(x)          = Σ_k π_k p_k(x)
    p(z = k | x)  = π_k p_k(x) / p(x)     (Bayes' rule: the responsibilities r_k)

Each function takes the components as one distribution with batch_shape (K,);
`gaussian_mixture` and `bernoulli_mixture` define only their components and
their E- and M-steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import distrax
import jax
import jax.numpy as jnp

from lvmjax import _validation
from lvmjax.types import Array

__all__ = [
    "kmeans_plus_plus",
    "kmeans_plus_plus_restarts",
    "log_marginal",
    "marginal",
    "nearest_centre",
    "posterior",
    "prior",
]


def prior(logits: Array) -> distrax.Categorical:
    """p(z) = Categorical(π), π = softmax(logits), logits of shape (K,)."""
    return distrax.Categorical(logits=logits)


def marginal(logits: Array, components: distrax.Distribution) -> distrax.MixtureSameFamily:
    """p(x) = Σ_k π_k p_k(x), of the K `components` (one distribution with batch_shape (K,))."""
    return distrax.MixtureSameFamily(prior(logits), components)


def _check_datapoint(
    x: Array, distribution: distrax.Distribution, model_name: str, check_values: Callable[[Array], None] | None = None
) -> None:
    """x is one datapoint of `distribution` (shape, real and finite where concrete), and, where its values
    are concrete, passes `check_values` (e.g. that every x_d is 0 or 1)."""
    _validation.check_event_shape(x, distribution, "x", model_name)
    if check_values is not None and not isinstance(x, jax.core.Tracer):
        check_values(x)


def log_marginal(
    logits: Array,
    components: distrax.Distribution,
    x: Array,
    model_name: str,
    check_values: Callable[[Array], None] | None = None,
) -> Array:
    """Exact log p(x) = log Σ_k π_k p_k(x) of one datapoint x, after `_check_datapoint`."""
    distribution = marginal(logits, components)
    _check_datapoint(x, distribution, model_name, check_values)
    return distribution.log_prob(x)


def posterior(
    logits: Array,
    components: distrax.Distribution,
    x: Array,
    model_name: str,
    check_values: Callable[[Array], None] | None = None,
) -> distrax.Categorical:
    """Exact p(z | x) by Bayes' rule, a Categorical whose probabilities are the responsibilities:

    log r_k = log π_k + log p_k(x) - log Σ_j π_j p_j(x)
    """
    _check_datapoint(x, marginal(logits, components), model_name, check_values)
    log_joint = jax.nn.log_softmax(logits) + components.log_prob(x)
    return distrax.Categorical(logits=log_joint - jax.nn.logsumexp(log_joint))


# --- k-means++ seeding ------------------------------------------------------------------


def kmeans_plus_plus(key: Array, data: Array, num_components: int, num_valid: Array | None = None) -> Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): K datapoints, each next one drawn with
    probability proportional to its squared distance from the nearest one already chosen. (K, D).

    With `num_valid` (may be traced), only the first `num_valid` rows are drawn from; the rest is padding.
    """
    return _kmeans_plus_plus(key, data, num_components, data.shape[0] if num_valid is None else num_valid)


def _kmeans_plus_plus(key: Array, data: Array, num_components: int, num_valid: int | Array) -> Array:
    """`kmeans_plus_plus` of the first `num_valid` rows of data (the rest is padding, never drawn);
    `num_valid` may be traced."""
    data = jnp.asarray(data)
    keys = jax.random.split(key, num_components)
    first = data[jax.random.randint(keys[0], (), 0, num_valid)]
    centres = jnp.zeros((num_components, data.shape[1]), data.dtype).at[0].set(first)
    distances = jnp.sum((data - first) ** 2, axis=1)
    valid = jnp.arange(data.shape[0]) < num_valid

    def add_centre(k, carry):
        centres, distances = carry
        log_distances = jnp.log(jnp.maximum(distances, 1e-30))
        if not isinstance(num_valid, int) or num_valid < data.shape[0]:
            log_distances = jnp.where(valid, log_distances, -jnp.inf)
        index = jax.random.categorical(keys[k], log_distances)
        centre = data[index]
        distances = jnp.minimum(distances, jnp.sum((data - centre) ** 2, axis=1))
        return centres.at[k].set(centre), distances

    centres, _ = jax.lax.fori_loop(1, num_components, add_centre, (centres, distances))
    return centres


@functools.partial(jax.jit, static_argnames=("num_components", "num_valid"))
def kmeans_plus_plus_restarts(keys: Array, data: Array, num_components: int, num_valid: int | Array) -> Array:
    """`kmeans_plus_plus` of the first `num_valid` rows of data (the rest padding) from each of the R `keys`,
    at once under `jax.vmap`: (R, K, D)."""
    return jax.vmap(lambda key: _kmeans_plus_plus(key, data, num_components, num_valid))(keys)


def nearest_centre(centres: Array, data: Array) -> Array:
    """Log responsibilities (N, K) of hard assignments: 0 for each datapoint's nearest centre (in squared
    Euclidean distance), -inf elsewhere."""
    distances = jnp.sum((data[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    return jnp.log(jax.nn.one_hot(jnp.argmin(distances, axis=1), centres.shape[0], dtype=data.dtype))

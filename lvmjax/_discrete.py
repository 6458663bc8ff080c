"""Finite discrete latent spaces: enumerating every state z, and the uniform q(z) over them.

Supported priors: `distrax.Categorical`, `distrax.OneHotCategorical`,
`distrax.Bernoulli`, and `distrax.Independent` of any of them (a vector of
binary or categorical latents, the 2^|Z| states of the seed text), and any
`CategoricalSequence`: n dependent categorical values, such as the state path of
a hidden Markov model (`lvmjax.models.hmm.StatePath`), with K^n states.
"""

from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp

from lvmjax.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "FINITE_FAMILIES",
    "MAX_ENUMERATED_STATES",
    "CategoricalSequence",
    "num_states",
    "support",
    "uniform_over_support",
]

MAX_ENUMERATED_STATES = 2**22

FINITE_FAMILIES = (distrax.Bernoulli, distrax.Categorical, distrax.OneHotCategorical)


class CategoricalSequence(distrax.Distribution):
    """A distribution over n categorical values z_1 … z_n ∈ {0, …, K - 1}, not independent.

    Subclasses set `num_categories` (K) and `length` (n) and define `log_prob` and
    `_sample_n`; the event is an int32 vector of shape (n,). Its support is the K^n
    sequences, which `support` lists in mixed-radix order (z_1 most significant).
    """

    num_categories: int
    length: int

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.length,)

    @property
    def dtype(self):
        return jnp.int32


def _base_and_ndims(dist: distrax.Distribution) -> tuple[distrax.Distribution, int]:
    """The per-element distribution and how many batch dimensions were made event ones."""
    if isinstance(dist, distrax.Independent):
        base = dist.distribution
        ndims = dist.reinterpreted_batch_ndims
    else:
        base, ndims = dist, 0
    if not isinstance(base, FINITE_FAMILIES):
        raise ArgumentTypeError(
            f"a finite discrete prior (Categorical, OneHotCategorical, Bernoulli, or "
            f"Independent of one of them) is needed, got {type(dist).__name__}"
            + (f" of {type(base).__name__}" if base is not dist else "")
            + "."
        )
    return base, ndims


def _states_per_element(base: distrax.Distribution) -> int:
    if isinstance(base, distrax.Bernoulli):
        return 2
    return base.num_categories


def num_states(dist: distrax.Distribution) -> int:
    """|Z|, the number of states of a finite discrete distribution."""
    if isinstance(dist, CategoricalSequence):
        return dist.num_categories**dist.length
    base, _ = _base_and_ndims(dist)
    return _states_per_element(base) ** math.prod(base.batch_shape)


def support(dist: distrax.Distribution) -> jax.Array:
    """Every state of `dist`, stacked: shape (|Z|, *event_shape), dtype of its samples."""
    if isinstance(dist, CategoricalSequence):
        base = distrax.Categorical(logits=jnp.zeros((dist.length, dist.num_categories)), dtype=jnp.int32)
    else:
        base, _ = _base_and_ndims(dist)
    radix = _states_per_element(base)
    num_elements = math.prod(base.batch_shape)
    total = radix**num_elements
    if total > MAX_ENUMERATED_STATES:
        raise ArgumentError(
            f"the latent space has {radix}^{num_elements} = {total} states, more than "
            f"the {MAX_ENUMERATED_STATES} that exact enumeration allows; estimate "
            "log p(x) with log_marginal_is instead."
        )
    index = jnp.arange(total)
    # Mixed-radix digits of the state index, most significant first.
    powers = radix ** jnp.arange(num_elements - 1, -1, -1)
    digits = (index[:, None] // powers) % radix
    digits = digits.reshape((total, *base.batch_shape))
    if isinstance(base, distrax.OneHotCategorical):
        return jax.nn.one_hot(digits, radix, dtype=dist.dtype)
    return digits.astype(dist.dtype)


def uniform_over_support(dist: distrax.Distribution) -> distrax.Distribution:
    """The uniform distribution over the states of `dist`, of the same family and shapes (for a
    `CategoricalSequence`, n independent uniform categoricals)."""
    if isinstance(dist, CategoricalSequence):
        logits = jnp.zeros((dist.length, dist.num_categories))
        return distrax.Independent(distrax.Categorical(logits=logits, dtype=jnp.int32), 1)
    base, ndims = _base_and_ndims(dist)
    logits = jnp.zeros_like(base.logits)
    uniform = type(base)(logits=logits, dtype=base.dtype)
    return distrax.Independent(uniform, ndims) if ndims else uniform

"""Variational families: q(z; φ) for one latent, as a pair of pure functions of φ.

A family turns a pytree φ into a distrax distribution. Non-amortized SVI holds
one φ_i per datapoint (stacked along a leading axis N); an encoder outputs φ(x)
for each x. The Gaussian families are reparameterizable, z = μ + L ε; the
categorical one is discrete (use score-function or exact-enumeration ELBOs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp

from lvmjax.types import Array, Params

__all__ = ["VariationalFamily", "categorical", "full_rank_gaussian", "mean_field_gaussian"]


class VariationalFamily(NamedTuple):
    """q(z; φ) for one latent.

    Attributes:
      init: `init(key) -> φ` for one datapoint.
      distribution: `distribution(φ) -> q(z; φ)`, a distrax distribution with batch_shape ().
    """

    init: Callable[[Array], Params]
    distribution: Callable[[Params], distrax.Distribution]


def mean_field_gaussian(latent_dim: int, init_scale: float = 1.0, init_mean_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = N(μ, diag(σ²)), φ = {"mean": μ, "log_scale": log σ}, each of shape (d,).

    Initialised at σ = init_scale and μ ~ N(0, init_mean_scale² I).
    """

    def init(key):
        return {
            "mean": init_mean_scale * jax.random.normal(key, (latent_dim,)),
            "log_scale": jnp.log(jnp.full((latent_dim,), init_scale, float)),
        }

    def distribution(phi):
        return distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"]))

    return VariationalFamily(init, distribution)


def full_rank_gaussian(latent_dim: int, init_scale: float = 1.0, init_mean_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = N(μ, L Lᵀ), φ = {"mean": μ (d,), "log_diag": (d,), "off_diag": (d, d)}.

    L = tril(off_diag, -1) + diag(exp(log_diag)): lower-triangular with a
    positive diagonal, so every φ gives a valid covariance.
    """

    def init(key):
        return {
            "mean": init_mean_scale * jax.random.normal(key, (latent_dim,)),
            "log_diag": jnp.log(jnp.full((latent_dim,), init_scale, float)),
            "off_diag": jnp.zeros((latent_dim, latent_dim)),
        }

    def distribution(phi):
        scale_tril = jnp.tril(phi["off_diag"], -1) + jnp.diag(jnp.exp(phi["log_diag"]))
        return distrax.MultivariateNormalTri(phi["mean"], scale_tril)

    return VariationalFamily(init, distribution)


def categorical(num_states: int, init_scale: float = 0.0) -> VariationalFamily:
    """q(z; φ) = Categorical(softmax(φ["logits"])) over z ∈ {0, …, K - 1}, φ["logits"] of shape (K,).

    Every q with full support is reached, the posterior of a mixture included.
    Initialised at logits ~ N(0, init_scale² I): the uniform q for init_scale = 0.
    Not reparameterizable: fit it with `estimators.elbo(..., gradient="score")`
    or `estimators.elbo_exact`.
    """

    def init(key):
        return {"logits": init_scale * jax.random.normal(key, (num_states,))}

    def distribution(phi):
        return distrax.Categorical(logits=phi["logits"])

    return VariationalFamily(init, distribution)

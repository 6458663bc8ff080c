"""lvmjax: latent variable models and variational inference in JAX.

The inference core: pure functions of one datapoint, key first, for
`jax.jit` and `jax.vmap`.
"""

from lvmjax import models
from lvmjax.estimators import (
    MarginalEstimate,
    elbo,
    elbo_exact,
    iwae_bound,
    latent_states,
    log_marginal_exact,
    log_marginal_is,
    log_marginal_naive_mc,
    log_weights,
)
from lvmjax.model import LatentVariableModel, log_joint, log_likelihood, sample
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

__version__ = "0.1.0"

__all__ = [
    "LatentVariableModel",
    "MarginalEstimate",
    "bernoulli_mixture",
    "elbo",
    "elbo_exact",
    "gaussian_mixture",
    "iwae_bound",
    "latent_states",
    "linear_gaussian",
    "log_joint",
    "log_likelihood",
    "log_marginal_exact",
    "log_marginal_is",
    "log_marginal_naive_mc",
    "log_weights",
    "models",
    "sample",
]

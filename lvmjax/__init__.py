"""lvmjax: latent variable models and variational inference in JAX.

The inference core: pure functions of one datapoint, key first, for
`jax.jit` and `jax.vmap`; annealed importance sampling and BDMC (`lvmjax.ais`) and
posterior sampling by MCMC (`lvmjax.mcmc`) beside the variational estimators. The
models are in `lvmjax.models`, the learning algorithms in their own modules
(`lvmjax.training`, `lvmjax.svi`, ...), and the runs of the command line in `lvmjax.app`.
"""

from lvmjax import mcmc, models
from lvmjax._version import __version__ as __version__
from lvmjax.ais import BDMCResult, bdmc, log_marginal_ais
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

__all__ = [
    "BDMCResult",
    "LatentVariableModel",
    "MarginalEstimate",
    "bdmc",
    "elbo",
    "elbo_exact",
    "iwae_bound",
    "latent_states",
    "log_joint",
    "log_likelihood",
    "log_marginal_ais",
    "log_marginal_exact",
    "log_marginal_is",
    "log_marginal_naive_mc",
    "log_weights",
    "mcmc",
    "models",
    "sample",
]

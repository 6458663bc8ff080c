"""Latent variable models with exact answers, written as `LatentVariableModel`s.

- `linear_gaussian`: factor analysis and probabilistic PCA (Gaussian z).
- `gaussian_mixture`: the mixture of Gaussians (categorical z), fitted by EM.
- `bernoulli_mixture`: the mixture of Bernoullis for binary data, fitted by MAP-EM.

Each module holds its model, its exact log p(x) and posterior, and its EM.
Variational inference for the mixture, by gradient steps, is `lvmjax.mixture_vi`,
beside the other learning algorithms.
"""

from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

__all__ = ["bernoulli_mixture", "gaussian_mixture", "linear_gaussian"]

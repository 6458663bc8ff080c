"""Latent variable models with exact answers, written as `LatentVariableModel`s.

- `linear_gaussian`: factor analysis and probabilistic PCA (Gaussian z).
- `gaussian_mixture`: the mixture of Gaussians (categorical z).
"""

from lvmjax.models import gaussian_mixture, linear_gaussian

__all__ = ["gaussian_mixture", "linear_gaussian"]

"""Latent variable models with exact answers, written as `LatentVariableModel`s.

- `linear_gaussian`: factor analysis and probabilistic PCA (Gaussian z).
- `gaussian_mixture`: the mixture of Gaussians (categorical z), fitted by EM or MAP-EM.
- `bayesian_mixture`: the same mixture with priors on its parameters, fitted by coordinate-ascent
  variational Bayes (Dirichlet or Dirichlet-process weights); its predictive is a Student-t mixture.
- `bernoulli_mixture`: the mixture of Bernoullis for binary data, fitted by MAP-EM.
- `lda`: latent Dirichlet allocation for bags of words, by batch coordinate ascent or
  stochastic VI with natural gradients (the parametrization of scikit-learn's).
- `hmm`: hidden Markov models for sequences (a Markov chain z_{1:T}), exact by the forward
  algorithm, fitted by Baum–Welch.

Each module holds its model, its exact log p(x) and posterior, and its EM. What
the two mixtures share (the prior, marginal and posterior of a finite mixture,
k-means++ seeding) is `_mixture`; the EM loops and their one convergence rule
are `_em`. The models import neither IO nor the mesh code: the Gaussian mixture's
EM over a device mesh or streamed in chunks is `lvmjax.distributed_em`, and
variational inference for the mixture, by gradient steps, is `lvmjax.mixture_vi`,
both beside the other learning algorithms.
"""

from lvmjax.models import bayesian_mixture, bernoulli_mixture, gaussian_mixture, hmm, lda, linear_gaussian

__all__ = ["bayesian_mixture", "bernoulli_mixture", "gaussian_mixture", "hmm", "lda", "linear_gaussian"]

"""The spec of `bgmm`: the variational Bayesian Gaussian mixture (`lvmjax.models.bayesian_mixture`).

Its test NLL is the posterior predictive's, −(1/M) Σ_j log p(x_j | training data), a mixture of
Student-t's in closed form. Generating and imputing use the plug-in mixture at the posterior means:
weights E[π_k], means m_k and covariances E[Λ_k]⁻¹.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications
from lvmjax.app.precision import precision_scope
from lvmjax.app.spec import DataKind, EvaluationSettings, ModelSpec, Run
from lvmjax.app.specs import _classical
from lvmjax.models import bayesian_mixture, gaussian_mixture

__all__ = ["SPEC"]


def _fit(key, train, config, mesh):
    del mesh  # one device
    return bayesian_mixture.fit_vb(
        key,
        train,
        config.components,
        config.covariance,
        config.weight_prior,
        max_iter=config.max_iter,
        reg_covar=config.reg_covar,
        n_init=config.n_init,
    )


def _plug_in(posterior: bayesian_mixture.Posterior) -> gaussian_mixture.Params:
    """The Gaussian mixture at the posterior means: log E[π_k], m_k, and the Cholesky factor of E[Λ_k]⁻¹."""
    covariances = posterior.covariances
    num_components, data_dim = posterior.means.shape
    if covariances.ndim == 1:  # spherical: one variance per component
        covariances = jnp.broadcast_to(covariances[:, None], (num_components, data_dim))
    if covariances.ndim == 2:  # diagonal
        scale_tril = jax.vmap(jnp.diag)(jnp.sqrt(covariances))
    else:
        scale_tril = jnp.linalg.cholesky(covariances)
    return gaussian_mixture.Params(jnp.log(bayesian_mixture.expected_weights(posterior)), posterior.means, scale_tril)


def _posterior(run: Run) -> bayesian_mixture.Posterior:
    return run.spec.model_params(run.params)


def _evaluate(config, saved, dataset, settings: EvaluationSettings) -> dict:
    posterior = config.spec.model_params(saved)
    with precision_scope(config):
        log_predictive = jax.jit(jax.vmap(bayesian_mixture.log_predictive, in_axes=(None, 0)))
        train = jnp.asarray(dataset.train, jnp.result_type(float))
        test = jnp.asarray(dataset.test, jnp.result_type(float))
        test_log_predictive = log_predictive(posterior, test)
        weights = bayesian_mixture.expected_weights(posterior)
        labels = jax.jit(jax.vmap(lambda x: jnp.argmax(bayesian_mixture.responsibilities(posterior, x))))(test)
        report = {
            "num_samples": None,
            "test_elbo": None,  # the ELBO bounds log p(x_1..N) of the training set, not a test point's
            "test_nll": -float(jnp.mean(test_log_predictive)),
            "test_nll_stderr": 0.0,
            "train_nll": -float(jnp.mean(log_predictive(posterior, train))),
            "effective_components": int(bayesian_mixture.effective_components(posterior)),
            "expected_weights": [float(weight) for weight in weights],
            "cluster_sizes": [int(count) for count in jnp.bincount(labels, length=config.components)],
        }
        if dataset.test_labels is not None:
            report["adjusted_rand_index"] = applications.adjusted_rand_index(dataset.test_labels, labels)
    if settings.per_datapoint:
        report["test_log_marginals"] = jax.device_get(test_log_predictive).tolist()
    return report


def _generative(run: Run):
    return gaussian_mixture.model, _plug_in(_posterior(run))


def _impute(key, run: Run, data, observed, num_samples: int) -> np.ndarray:
    del key, num_samples
    params = _plug_in(_posterior(run))
    with precision_scope(run.config):
        impute_one = jax.vmap(lambda x: applications.impute_gaussian_mixture(params, x, observed)[1])
        return np.asarray(jax.jit(impute_one)(jnp.asarray(data)))


def _component_means(run: Run) -> tuple[np.ndarray, np.ndarray]:
    posterior = _posterior(run)
    return np.asarray(bayesian_mixture.expected_weights(posterior)), np.asarray(posterior.means)


SPEC = ModelSpec(
    name="bgmm",
    summary="variational Bayesian Gaussian mixture (coordinate-ascent VI, Dirichlet-process or Dirichlet weights)",
    data_kind=DataKind.REAL,
    options=frozenset({"components", "covariance", "weight_prior", "max_iter", "n_init", "reg_covar", "precision"}),
    fit=_classical.fit_by(_fit, bayesian_mixture.log_predictive),
    evaluate=_evaluate,
    template=_classical.template_of(_fit, lambda config, data_dim: max(config.components, 2)),
    size=lambda config: f"{config.components} components",
    check=_classical.check_components,
    nll_method="posterior predictive",
    history_unit="EM iteration",
    objective=lambda config: "ELBO per datapoint",
    params_type=bayesian_mixture.Posterior,
    generative=_generative,
    impute=_impute,
    component_means=_component_means,
    reasons={
        "latent_codes": "bgmm has a discrete z (the component): it has no latent space to show.",
        "select": "bgmm switches surplus components off itself: fit it with a generous --components and read "
        "effective_components from 'lvmjax evaluate --json'",
    },
)

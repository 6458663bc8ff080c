"""The spec of `gmm`: the Gaussian mixture fitted by EM (`lvmjax.models.gaussian_mixture`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications, distributed_em, parallel
from lvmjax.app.spec import DataKind, ModelSpec, Run
from lvmjax.app.specs import _classical
from lvmjax.errors import RunError
from lvmjax.models import gaussian_mixture

__all__ = ["SPEC"]


def _fit(key, train, config, mesh):
    options = {"max_iter": config.max_iter, "n_init": config.n_init, "reg_covar": config.reg_covar}
    prior = None
    if config.prior == "conjugate":
        prior = gaussian_mixture.default_prior(train, config.components, config.covariance)
    if mesh is None:
        return gaussian_mixture.fit_em(key, train, config.components, config.covariance, prior=prior, **options)
    if prior is not None:
        raise RunError("gmm with {prior} conjugate fits on one device; drop {devices}, or fit {prior} none.")
    params, info = distributed_em.fit_em(key, train, config.components, config.covariance, mesh=mesh, **options)
    return jax.tree.map(jnp.asarray, parallel.to_host((params, info)))  # on one device, like every run's


def _num_free_parameters(config, data_dim: int) -> int:
    return gaussian_mixture.num_free_parameters(config.components, data_dim, config.covariance)


def _smallest_variances(params: gaussian_mixture.Params):
    return jnp.min(jnp.diagonal(params.scale_tril, axis1=1, axis2=2) ** 2, axis=1)


_DIAGNOSE = _classical.collapse_diagnosis(
    gaussian_mixture.collapsed_components, gaussian_mixture.posterior, _smallest_variances
)


def _component_means(run: Run) -> tuple[np.ndarray, np.ndarray]:
    params = run.spec.model_params(run.params)
    return np.asarray(jax.nn.softmax(params.logits)), np.asarray(params.means)


SPEC = ModelSpec(
    name="gmm",
    summary="Gaussian mixture (EM, or MAP-EM under a conjugate prior)",
    data_kind=DataKind.REAL,
    options=frozenset({"components", "covariance", "max_iter", "n_init", "precision", "reg_covar", "prior"}),
    fit=_classical.fit_by(
        _fit,
        gaussian_mixture.log_marginal,
        diagnose=_DIAGNOSE,
        non_finite_hint=": a covariance collapsed below what the float type can factor (the "
        "regularizer {reg_covar} is too small against the data's scale); try a larger {reg_covar}, {prior} conjugate, "
        "{covariance} diag or {precision} float64",
    ),
    evaluate=_classical.exact_evaluation(
        gaussian_mixture.log_marginal,
        _num_free_parameters,
        _classical.mixture_metrics(gaussian_mixture.posterior, _DIAGNOSE),
    ),
    template=_classical.template_of(_fit, lambda config, data_dim: config.components),
    size=lambda config: f"{config.components} components",
    check=_classical.check_components,
    nll_method="exact",
    history_unit="EM iteration",
    devices=True,
    objective=lambda config: "log-likelihood",
    params_type=gaussian_mixture.Params,
    num_free_parameters=_num_free_parameters,
    generative=_classical.generative_of(gaussian_mixture.model),
    impute=_classical.exact_imputation(applications.impute_gaussian_mixture),
    component_means=_component_means,
    selection="components",
    reasons={"latent_codes": "gmm has a discrete z (the component): it has no latent space to show."},
)

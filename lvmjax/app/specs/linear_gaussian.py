"""The specs of `fa` and `ppca`: factor analysis by EM and probabilistic PCA in closed form
(`lvmjax.models.linear_gaussian`), both x ~ N(b, W Wᵀ + Ψ) with a continuous z ~ N(0, I)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications
from lvmjax.app.precision import precision_scope
from lvmjax.app.spec import DataKind, ModelSpec, Run
from lvmjax.app.specs import _classical
from lvmjax.errors import PrecisionError, RunError
from lvmjax.models import linear_gaussian

__all__ = ["FA", "PPCA", "SPECS"]


def _fit_factor_analysis(key, train, config, mesh):
    with warnings.catch_warnings():
        # The model's own warning of a fit below float resolution: `_check_resolution` refuses it instead.
        warnings.filterwarnings("ignore", message="factor analysis in", category=RuntimeWarning)
        return linear_gaussian.fit_factor_analysis(key, train, config.latent_dim, max_iter=config.max_iter)


def _fit_ppca(key, train, config, mesh):
    return linear_gaussian.fit_ppca(train, config.latent_dim), None


def _check_resolution(config, params, train) -> None:
    """Refuses a fit whose log-likelihood is rounding noise (`linear_gaussian.log_likelihood_error_bound`)."""
    if isinstance(params.noise_variance, jax.core.Tracer):
        return
    bound = linear_gaussian.log_likelihood_error_bound(params.noise_variance, train)
    if bound <= 1:
        return
    dtype = np.dtype(train.dtype).name
    cure = (
        "fit again with {precision} float64"
        if dtype == "float32"
        else "standardize the data's columns (their scales differ too much even for float64)"
    )
    raise PrecisionError(
        f"{config.model} in {dtype}: the smallest noise variance, {float(jnp.min(params.noise_variance)):.3g}, "
        f"is below what {dtype} resolves in the data's covariance, so the log-likelihood is rounding noise (off by "
        f"up to {bound:.3g} nats per datapoint) and nothing was saved; {cure}."
    )


def _check(config, num_data: int, data_dim: int) -> None:
    if config.latent_dim >= data_dim:
        raise RunError(f"{{latent_dim}} {config.latent_dim} must be below the data dimension D={data_dim}.")


def _latent_codes(run: Run, dataset):
    params = run.spec.model_params(run.params)
    with precision_scope(run.config):
        codes = applications.latent_means(
            jax.jit(linear_gaussian.posterior), params, jnp.asarray(dataset.test, jnp.result_type(float))
        )
    return np.asarray(codes), dataset.test_labels, "E[z | x], the exact posterior mean, of the test data"


def _spec(name: str, summary: str, fit_model, options: frozenset[str], isotropic: bool) -> ModelSpec:
    def num_free_parameters(config, data_dim: int) -> int:
        return linear_gaussian.num_free_parameters(data_dim, config.latent_dim, isotropic=isotropic)

    return ModelSpec(
        name=name,
        summary=summary,
        data_kind=DataKind.REAL,
        options=options | {"latent_dim", "precision"},
        fit=_classical.fit_by(fit_model, linear_gaussian.log_marginal, _check_resolution),
        evaluate=_classical.exact_evaluation(linear_gaussian.log_marginal, num_free_parameters),
        template=_classical.template_of(fit_model, lambda config, data_dim: data_dim + 1),
        size=lambda config: f"latent-dim {config.latent_dim}",
        check=_check,
        nll_method="exact",
        history_unit="EM iteration",
        objective=lambda config: "log-likelihood",
        params_type=linear_gaussian.Params,
        num_free_parameters=num_free_parameters,
        generative=_classical.generative_of(linear_gaussian.model),
        impute=_classical.exact_imputation(applications.impute_linear_gaussian),
        latent_codes=_latent_codes,
        selection="latent_dim",
    )


FA = _spec("fa", "factor analysis (EM)", _fit_factor_analysis, frozenset({"max_iter"}), isotropic=False)
PPCA = _spec("ppca", "probabilistic PCA (closed form)", _fit_ppca, frozenset(), isotropic=True)
SPECS = (FA, PPCA)

"""The spec of `mob`: the mixture of Bernoullis fitted by MAP-EM (`lvmjax.models.bernoulli_mixture`)."""

from __future__ import annotations

import jax
import numpy as np

from lvmjax import applications
from lvmjax.app.spec import DataKind, ModelSpec, Run
from lvmjax.app.specs import _classical
from lvmjax.models import bernoulli_mixture

__all__ = ["SPEC"]


def _fit(key, train, config, mesh):
    return bernoulli_mixture.fit_em(key, train, config.components, max_iter=config.max_iter, n_init=config.n_init)


def _component_means(run: Run) -> tuple[np.ndarray, np.ndarray]:
    params = run.spec.model_params(run.params)
    return np.asarray(jax.nn.softmax(params.logits)), np.asarray(jax.nn.sigmoid(params.probs_logits))


def _num_free_parameters(config, data_dim: int) -> int:
    return bernoulli_mixture.num_free_parameters(config.components, data_dim)


SPEC = ModelSpec(
    name="mob",
    summary="mixture of Bernoullis (EM)",
    data_kind=DataKind.BINARY,
    options=frozenset({"components", "max_iter", "n_init", "precision"}),
    fit=_classical.fit_by(_fit, bernoulli_mixture.log_marginal),
    evaluate=_classical.exact_evaluation(
        bernoulli_mixture.log_marginal, _num_free_parameters, _classical.mixture_metrics(bernoulli_mixture.posterior)
    ),
    template=_classical.template_of(_fit, lambda config, data_dim: config.components),
    size=lambda config: f"{config.components} components",
    check=_classical.check_components,
    nll_method="exact",
    history_unit="EM iteration",
    objective=lambda config: "log-likelihood + log p(θ) / N",
    params_type=bernoulli_mixture.Params,
    num_free_parameters=_num_free_parameters,
    generative=_classical.generative_of(bernoulli_mixture.model),
    impute=_classical.exact_imputation(applications.impute_bernoulli_mixture),
    component_means=_component_means,
    selection="components",
    reasons={"latent_codes": "mob has a discrete z (the component): it has no latent space to show."},
)

"""What the classical models share: fitted in one go (EM, or a closed form), with an exact log p(x).

Their specs are built from these pieces, each taking the model's own functions:
`fit_by` turns a model's fit into the application's, `exact_evaluation` scores the
test split exactly, `template_of` reads the saved parameters' shapes off the fit
itself (no parameter shapes are written down twice), and the rest are the
capabilities of a fitted model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications
from lvmjax.app.precision import precision_scope
from lvmjax.app.spec import EvaluationSettings, FitResult, Run
from lvmjax.errors import RunError
from lvmjax.model import LatentVariableModel
from lvmjax.types import Array, Params

if TYPE_CHECKING:
    from jax.sharding import Mesh

    from lvmjax.app.config import FitConfig
    from lvmjax.data import Dataset
    from lvmjax.models._em import EMInfo

__all__ = [
    "check_components",
    "collapse_diagnosis",
    "exact_evaluation",
    "exact_imputation",
    "fit_by",
    "generative_of",
    "mixture_metrics",
    "template_of",
]

FitModel = Callable[[Array, Array, "FitConfig", "Mesh | None"], tuple[Params, "EMInfo | None"]]
"""`fit_model(key, train, config, mesh) -> (Params, EMInfo or None)`: None for a closed form."""

Diagnose = Callable[["FitConfig", Params, Array], tuple[dict, tuple[str, ...]]]
"""`diagnose(config, params, train) -> (diagnostics, warnings)`: what a fit found that its user should know."""


def fit_by(
    fit_model: FitModel,
    log_marginal: Callable[[Params, Array], Array],
    check_fit: Callable[[FitConfig, Params, Array], None] | None = None,
    diagnose: Diagnose | None = None,
    non_finite_hint: str = "",
) -> Callable[..., FitResult]:
    """The application's fit of a classical model: `fit_model` on the training split, in the run's precision.

    The history is EM's objective at every iterate (`EMInfo.objective`), or for a
    closed form one entry, the mean log-likelihood at the maximum. `check_fit(config,
    params, train)` may refuse a fit whose numbers it knows to be noise; `diagnose`
    gives the `FitResult`'s diagnostics (saved with the run) and warnings (shown).
    A fit whose objective becomes non-finite is refused, with `non_finite_hint` (what to
    try) after the message.
    """

    def fit(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
        del progress, checkpoints  # one step, nothing to resume
        with precision_scope(config):
            train = jnp.asarray(dataset.train, jnp.result_type(float))
            start = time.perf_counter()
            params, info = fit_model(jax.random.key(config.seed), train, config, mesh)
            params = jax.block_until_ready(params)
            seconds = time.perf_counter() - start
            if check_fit is not None:
                check_fit(config, params, train)
            diagnostics, warnings = diagnose(config, params, train) if diagnose is not None else (None, ())
            if info is None:  # closed form: one "iteration", at the maximum
                trace = [float(jnp.mean(jax.vmap(log_marginal, in_axes=(None, 0))(params, train)))]
            else:
                trace = [float(value) for value in jax.device_get(info.objective)[: int(info.num_iterations)]]
        if not all(math.isfinite(value) for value in trace):
            raise RunError(f"EM's objective became non-finite for {config.model} on {dataset.name}{non_finite_hint}.")
        history = [{"iteration": iteration, "train_objective": value} for iteration, value in enumerate(trace)]
        return FitResult(
            params._asdict(),
            history,
            seconds,
            train.shape[1],
            dataset.image_shape,
            train.shape[0],
            diagnostics,
            warnings,
        )

    return fit


def template_of(fit_model: FitModel, num_rows: Callable[[FitConfig, int], int]):
    """`template(config, data_dim, image_shape, num_train)`: the shapes of what `fit_model` returns, traced on
    abstract data of `num_rows(config, data_dim)` rows (nothing is computed), as the saved dict."""

    def template(config, data_dim: int, image_shape, num_train: int):
        with precision_scope(config):
            data = jax.ShapeDtypeStruct((num_rows(config, data_dim), data_dim), jnp.result_type(float))
            shapes = jax.eval_shape(lambda train: fit_model(jax.random.key(0), train, config, None)[0], data)
        return shapes._asdict()

    return template


def exact_evaluation(
    log_marginal: Callable[[Params, Array], Array],
    num_free_parameters: Callable[[FitConfig, int], int],
    extra: Callable[[FitConfig, Params, Dataset], dict] | None = None,
) -> Callable[..., dict]:
    """Exact test metrics: −log p(x) needs no sampling, and with q = p(z | x) the ELBO is log p(x).

    Reports the test NLL (its standard error is 0), the training NLL and the BIC,
    −2 Σ_i log p(x_i; θ) + (free parameters) log N over the training split, and what
    `extra(config, params, dataset)` adds.
    """

    def evaluate(config, saved, dataset, settings: EvaluationSettings) -> dict:
        params = config.spec.model_params(saved)
        with precision_scope(config):
            log_marginals = jax.jit(jax.vmap(log_marginal, in_axes=(None, 0)))
            train = jnp.asarray(dataset.train, jnp.result_type(float))
            test = jnp.asarray(dataset.test, jnp.result_type(float))
            test_log_marginals, train_log_marginals = log_marginals(params, test), log_marginals(params, train)
            num_train = train.shape[0]
            bic = -2 * float(jnp.sum(train_log_marginals)) + num_free_parameters(config, train.shape[1]) * math.log(
                num_train
            )
            report = {
                "num_samples": None,
                "test_elbo": float(jnp.mean(test_log_marginals)),
                "test_nll": -float(jnp.mean(test_log_marginals)),
                "test_nll_stderr": 0.0,
                "train_nll": -float(jnp.mean(train_log_marginals)),
                "bic": bic,
            }
            if extra is not None:
                report |= extra(config, params, dataset)
        if settings.per_datapoint:
            report["test_log_marginals"] = jax.device_get(test_log_marginals).tolist()
        return report

    return evaluate


def _labels(posterior: Callable, params: Params, data: Array) -> np.ndarray:
    """Each row's most probable component, (N,) ints."""
    return np.asarray(jax.jit(jax.vmap(lambda x: jnp.argmax(posterior(params, x).logits)))(data))


def collapse_diagnosis(
    collapsed: Callable[[Params, float], Array], posterior: Callable, smallest_variances: Callable[[Params], Array]
) -> Diagnose:
    """`diagnose` of a Gaussian mixture: the components that `collapsed(params, reg_covar)` flags, each with
    the training points it holds (those it is the most probable component of) and its smallest variance,
    and one warning line that says what to do."""

    def diagnose(config, params, train) -> tuple[dict, tuple[str, ...]]:
        flags = np.asarray(collapsed(params, config.reg_covar))
        sizes = np.bincount(_labels(posterior, params, train), minlength=len(flags))
        variances = np.asarray(smallest_variances(params))
        entries = [
            {"component": int(k), "training_points": int(sizes[k]), "smallest_variance": float(variances[k])}
            for k in np.flatnonzero(flags)
        ]
        diagnostics = {"collapsed_components": entries}
        if not entries:
            return diagnostics, ()
        which = "; ".join(
            f"component {entry['component']} holds {entry['training_points']} training points, smallest "
            f"variance {entry['smallest_variance']:.2g}"
            for entry in entries
        )
        held_up = "held up by {reg_covar} alone" if config.prior == "none" else "below 10 times {reg_covar}"
        warning = (
            f"{len(entries)} of {len(flags)} components collapsed ({which}), {held_up}: a spurious maximum of "
            "the likelihood, not a cluster; fit fewer {components}, a larger {reg_covar}, {covariance} diag, "
            "or {prior} conjugate."
        )
        return diagnostics, (warning,)

    return diagnose


def mixture_metrics(posterior: Callable, diagnose: Diagnose | None = None):
    """`extra` of a mixture's evaluation: the test clusters' sizes and, on labelled data, their adjusted
    Rand index; with `diagnose` (`collapse_diagnosis`), the collapsed components, their number and each
    one's training points and smallest variance."""

    def extra(config, params, dataset) -> dict:
        test = jnp.asarray(dataset.test, jnp.result_type(float))
        labels = _labels(posterior, params, test)
        report: dict = {"cluster_sizes": np.bincount(labels, minlength=config.components).tolist()}
        if dataset.test_labels is not None:
            report["adjusted_rand_index"] = applications.adjusted_rand_index(dataset.test_labels, labels)
        if diagnose is not None:
            train = jnp.asarray(dataset.train, jnp.result_type(float))
            collapsed = diagnose(config, params, train)[0]["collapsed_components"]
            report["collapsed_components"] = len(collapsed)
            report["collapsed"] = collapsed
        return report

    return extra


def check_components(config, num_data: int, data_dim: int) -> None:
    """`check` of a mixture: at most one component per training datapoint."""
    if config.components > num_data:
        raise RunError(
            f"{{components}} must be between 1 and the number of training datapoints ({num_data}), "
            f"got {config.components}."
        )


def generative_of(model: LatentVariableModel) -> Callable[[Run], tuple[LatentVariableModel, Params]]:
    """`generative(run)`: the model with the run's parameters as its `Params`."""

    def generative(run: Run):
        return model, run.spec.model_params(run.params)

    return generative


def exact_imputation(impute_one: Callable[[Params, Array, Array], tuple[Array, Array]]):
    """`impute(key, run, data, observed, num_samples)` by the exact E[x_m | x_o] of `impute_one`; no draws."""

    def impute(key, run: Run, data, observed, num_samples: int) -> np.ndarray:
        del key, num_samples
        params = run.spec.model_params(run.params)
        with precision_scope(run.config):
            return np.asarray(jax.jit(jax.vmap(lambda x: impute_one(params, x, observed)[1]))(jnp.asarray(data)))

    return impute

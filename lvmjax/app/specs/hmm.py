"""The spec of `hmm`: the hidden Markov model fitted by Baum–Welch (`lvmjax.models.hmm`).

Its data are sequences (`lvmjax.time_series`): the rows of each split are time steps,
cut into sequences by the split's lengths. A "datapoint" of the common metrics is a
time step: the test NLL is −(1/T_test) Σ_t log p(x_t | x_{1:t-1}), the one-step
predictive log-likelihoods of the test steps (given the training steps before them
where the test split continues the one training sequence), exact by the forward
algorithm; their negatives are the per-step anomaly scores. The saved parameters are
the model's `Params` flattened into one dict (the emission's fields beside π and A).
Categorical emissions read one column of category indices, which `prepare` recodes
as one-hot rows, so that the number of categories is the data's dimension.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import plots, time_series
from lvmjax.app.precision import precision_scope
from lvmjax.app.spec import DataKind, EvaluationSettings, FitResult, ModelSpec, Run
from lvmjax.errors import RunError
from lvmjax.models import hmm

__all__ = ["FORECAST_STEPS", "GENERATED_STEPS", "SPEC"]

GENERATED_STEPS = 100  # the length of each sequence `lvmjax sample` draws
FORECAST_STEPS = 10  # how far the forecast figure looks ahead
_EMISSIONS: tuple[Any, ...] = (hmm.GaussianEmission, hmm.CategoricalEmission, hmm.PoissonEmission)


def _saved(params: hmm.Params) -> dict:
    """θ as the run directory saves it: one flat dict."""
    return {"initial_probs": params.initial_probs, "transition_matrix": params.transition_matrix} | (
        params.emission._asdict()
    )


def _params(**saved) -> hmm.Params:
    """The saved dict as the model's `Params` (its emission told apart by its fields)."""
    emission = next(
        fields(**{name: saved[name] for name in fields._fields})
        for fields in _EMISSIONS
        if set(fields._fields) <= set(saved)
    )
    return hmm.Params(saved["initial_probs"], saved["transition_matrix"], emission)


def _sequences(config, steps: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The sequences of a split as the model takes them (category indices for categorical emissions)."""
    sequences = time_series.sequences_of(steps, lengths)
    if config.emission == "categorical":
        return [np.argmax(sequence, axis=1).astype(np.int32) for sequence in sequences]
    return [sequence.astype(jnp.result_type(float)) for sequence in sequences]


def _fit(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
    del progress, checkpoints, mesh  # one compiled program, nothing to resume, one device
    data_dim = dataset.train.shape[1]
    with precision_scope(config):
        sequences = _sequences(config, dataset.train, dataset.train_lengths)
        start = time.perf_counter()
        params, info = hmm.fit_em(
            jax.random.key(config.seed),
            sequences,
            config.states,
            config.emission,
            config.covariance,
            max_iter=config.max_iter,
            n_init=config.n_init,
            num_categories=data_dim if config.emission == "categorical" else None,
        )
        params = jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        trace = [float(value) for value in jax.device_get(info.objective)[: int(info.num_iterations)]]
    if not all(math.isfinite(value) for value in trace):
        raise RunError(f"Baum–Welch's objective became non-finite for hmm on {dataset.name}.")
    history = [{"iteration": iteration, "train_objective": value} for iteration, value in enumerate(trace)]
    return FitResult(_saved(params), history, seconds, data_dim, None, dataset.train.shape[0])


def _template(config, data_dim: int, image_shape, num_train: int) -> dict:
    with precision_scope(config):
        dtype = jnp.result_type(float)
        states = config.states

        def shape(*dims):
            return jax.ShapeDtypeStruct(dims, dtype)

        emission = {
            "gaussian": lambda: {
                "means": shape(states, data_dim),
                "covariances": shape(states, data_dim, data_dim)
                if config.covariance == "full"
                else shape(states, data_dim),
            },
            "categorical": lambda: {"probs": shape(states, data_dim)},
            "poisson": lambda: {"rates": shape(states, data_dim)},
        }[config.emission]()
    return {"initial_probs": shape(states), "transition_matrix": shape(states, states)} | emission


def _check(config, num_data: int, data_dim: int) -> None:
    if config.covariance not in hmm.COVARIANCE_TYPES:
        raise RunError(f"hmm's {{covariance}} is one of {', '.join(hmm.COVARIANCE_TYPES)}, got {config.covariance!r}.")
    if config.states > num_data:
        raise RunError(
            f"{{states}} must be between 1 and the number of training time steps ({num_data}), got {config.states}."
        )


def _prepare(config, dataset):
    """Counts are non-negative integers; categories, one column of them, become one-hot rows."""
    if config.emission == "gaussian":
        return dataset
    splits = {"training": dataset.train, "test": dataset.test}
    for split, values in splits.items():
        bad = (values < 0) | (values != np.round(values))
        if np.any(bad):
            what = "counts" if config.emission == "poisson" else "category indices"
            raise RunError(
                f"hmm with {{emission}} {config.emission} reads non-negative integer {what}, but the {split} split "
                f"of {dataset.name} holds {values[bad].flat[0]!r}."
            )
    if config.emission == "poisson":
        return dataset
    if dataset.train.shape[1] != 1:
        raise RunError(
            f"hmm with {{emission}} categorical reads one column of category indices, but {dataset.name} has "
            f"{dataset.train.shape[1]} columns."
        )
    num_categories = int(max(dataset.train.max(), dataset.test.max())) + 1
    one_hot = np.eye(num_categories, dtype=np.float32)
    return dataset._replace(
        train=one_hot[dataset.train[:, 0].astype(int)], test=one_hot[dataset.test[:, 0].astype(int)], binary=True
    )


def _padded(config, dataset, split: str):
    steps, lengths = (
        (dataset.train, dataset.train_lengths) if split == "train" else (dataset.test, dataset.test_lengths)
    )
    if split == "test" and dataset.test_follows_train:  # the test steps after their training context
        steps, lengths = (
            np.concatenate([dataset.train, dataset.test]),
            np.array([len(dataset.train) + len(dataset.test)]),
        )
    padded, lengths = hmm.as_padded_batch(_sequences(config, steps, lengths), None, config.emission)
    observed = np.arange(padded.shape[1])[None] < lengths[:, None]
    return jnp.asarray(padded), jnp.asarray(observed), lengths


@jax.jit
def _per_step(params, padded, observed):
    """log p(x_t | x_{1:t-1}) (S, T_max) and the Viterbi states (S, T_max) of a padded batch."""
    log_likelihoods = jax.vmap(hmm.predictive_log_likelihoods, in_axes=(None, 0, 0))(params, padded, observed)
    states = jax.vmap(hmm.most_likely_states, in_axes=(None, 0, 0))(params, padded, observed)
    marginals = jax.vmap(lambda x, mask: hmm.posterior_marginals(params, x, mask).marginals)(padded, observed)
    return log_likelihoods, states, marginals


def _test_steps(config, params, dataset):
    """(log p(x_t | x_{1:t-1}), Viterbi state, p(z_t | x)) of every test step, in the split's order."""
    padded, observed, lengths = _padded(config, dataset, "test")
    log_likelihoods, states, marginals = jax.device_get(_per_step(params, padded, jnp.asarray(observed)))
    rows = [
        (log_likelihoods[index, :length], states[index, :length], marginals[index, :length])
        for index, length in enumerate(lengths)
    ]
    log_likelihoods, states, marginals = (np.concatenate(parts) for parts in zip(*rows, strict=True))
    num_test = dataset.test.shape[0]
    return log_likelihoods[-num_test:], states[-num_test:], marginals[-num_test:]


def _num_free_parameters(config, data_dim: int) -> int:
    return hmm.num_free_parameters(config.states, data_dim, config.emission, config.covariance)


def _evaluate(config, saved, dataset, settings: EvaluationSettings) -> dict:
    params = _params(**saved)
    with precision_scope(config):
        log_likelihoods, states, marginals = _test_steps(config, params, dataset)
        padded, observed, _ = _padded(config, dataset, "train")
        train = jax.vmap(hmm.log_marginal, in_axes=(None, 0, 0))(params, padded, jnp.asarray(observed))
        train_log_likelihood = float(jnp.sum(train))
    num_train = dataset.train.shape[0]
    mean = float(np.mean(log_likelihoods))
    bic = -2 * train_log_likelihood + _num_free_parameters(config, dataset.train.shape[1]) * math.log(num_train)
    report = {
        "num_samples": None,
        "test_elbo": mean,
        "test_nll": -mean,
        "test_nll_stderr": 0.0,
        "train_nll": -train_log_likelihood / num_train,
        "bic": bic,
        "test_log_likelihood_per_step": mean,
        "state_occupancies": [float(share) for share in np.bincount(states, minlength=config.states) / len(states)],
        "expected_state_occupancies": [float(share) for share in np.mean(marginals, axis=0)],
        "most_anomalous_test_step": int(np.argmin(log_likelihoods)),
        "max_anomaly_score": float(-np.min(log_likelihoods)),
    }
    if settings.per_datapoint:
        report["test_log_marginals"] = [float(value) for value in log_likelihoods]
    return report


def _generative(run: Run):
    params = _params(**run.params)
    return hmm.model(GENERATED_STEPS, params.emission), params


def _figures(run: Run, dataset) -> dict:
    """segmentation: the series coloured by its Viterbi states, and the smoothed p(z_t | x) beneath; forecast:
    p(x_{T+h} | x_{1:T}) for the next `FORECAST_STEPS` steps, its mean and ± 2 standard deviations (Gaussian
    and Poisson emissions). Of the whole series where the test steps follow the training ones, else of the
    first test sequence."""
    config = run.config
    params = _params(**run.params)
    if dataset.test_follows_train:
        values = np.concatenate([dataset.train, dataset.test])
        boundary: int | None = len(dataset.train)
        what = f"{dataset.name}: training steps, then the test steps"
    else:
        values, boundary = dataset.test[: dataset.test_lengths[0]], None
        what = f"{dataset.name}: the first test sequence"
    with precision_scope(config):
        sequence = jnp.asarray(_sequences(config, values, np.array([len(values)]))[0])
        _, states, marginals = (
            np.asarray(part[0]) for part in _per_step(params, sequence[None], jnp.ones((1, len(sequence)), bool))
        )
        ahead = hmm.predict(params, sequence, FORECAST_STEPS) if config.emission != "categorical" else None
    title = f"hmm ({config.states} states): {what}"
    series = np.argmax(values, axis=1)[:, None] if config.emission == "categorical" else values
    figures = {"segmentation": plots.segmented_series(series, states, marginals, boundary=boundary, title=title)}
    if ahead is not None:
        mean, stddev = np.asarray(ahead.mean()), np.asarray(ahead.stddev())
        figures["forecast"] = plots.forecast(values, mean, stddev, title=f"{title}, and {FORECAST_STEPS} ahead")
    return figures


SPEC = ModelSpec(
    name="hmm",
    summary="hidden Markov model for sequences (Baum–Welch)",
    data_kind=DataKind.SEQUENCES,
    options=frozenset({"states", "emission", "covariance", "max_iter", "n_init", "precision"}),
    fit=_fit,
    evaluate=_evaluate,
    template=_template,
    size=lambda config: f"{config.states} states",
    check=_check,
    nll_method="exact",
    history_unit="EM iteration",
    objective=lambda config: "log-likelihood per time step",
    params_type=_params,
    num_free_parameters=_num_free_parameters,
    generative=_generative,
    prepare=_prepare,
    figures=_figures,
    reasons={
        "impute": "hmm imputes missing time steps, not columns: in Python, lvmjax.models.hmm.impute(params, x, "
        "observed) fills the steps where observed is False.",
        "latent_codes": "hmm has a discrete z (the state path): it has no latent space to show; "
        "lvmjax plot draws its segmentation instead.",
        "devices": "hmm fits on one device.",
        "select": "hmm's data are sequences, which select cannot divide into fitting and validation rows; "
        "compare --states by the bic of 'lvmjax evaluate --json'.",
    },
)

"""The tour's experiments: its budgets, its models' configurations, and what it measures on the fitted models.

The tour is a fixed story over named models (`TOUR_MODELS`, their configurations in
`fit_configs`); what each model does (the data it takes, how it fits, how its log p(x)
is known, what it can impute or encode) comes from its spec in `lvmjax.app.registry`.
Every model is fitted by `app.fit` and evaluated by `app.evaluate`, the code behind
`lvmjax fit` and `lvmjax evaluate`; imputation and the latent space go through
`lvmjax.app.figures`, as for `lvmjax impute` and `lvmjax plot`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import app, applications, semi_amortized
from lvmjax.app import figures as app_figures
from lvmjax.app import registry
from lvmjax.app.spec import DataKind
from lvmjax.data import Dataset
from lvmjax.errors import RunError
from lvmjax.estimators import iwae_bound, log_marginal_is, log_marginal_naive_mc
from lvmjax.model import sample

__all__ = [
    "ANOMALIES",
    "BY_EM",
    "DATA_NAMES",
    "FULL",
    "IMPUTED",
    "LATENT",
    "OVER_EPOCHS",
    "QUICK",
    "RICH_VAE",
    "SEMI_AMORTIZED",
    "SEQUENCE_BASELINE",
    "SEQUENCE_MODEL",
    "TOPIC_DATA",
    "TOPIC_MODELS",
    "TOUR_MODELS",
    "TourSettings",
    "by_data",
    "estimator_comparison",
    "fit_configs",
    "gold_standard",
    "image_shape",
    "imputation",
    "latent_space",
    "least_likely",
    "load_datasets",
    "make_run",
    "model_metrics",
    "sequence_configs",
    "sequence_story",
    "time_refinement",
    "topic_configs",
    "topic_story",
]

Advance = Callable[..., None]  # advance(done, status): a stage's progress (`run._Stages`)

RICH_VAE = "vae-flow"  # the vae with the richer posterior and prior of `make_vae`, on the vae's budget
RICH_VAE_OPTIONS: dict[str, Any] = {"posterior": "iaf", "prior": "mixture"}  # see benchmarks/rich_posteriors.py
MODEL_OF = {RICH_VAE: "vae"}  # the registry's model of each tour row whose name is not one
TOUR_MODELS = ("mob", "gmm", "fa", "ae", "vae", RICH_VAE, "iwae", "svi")
SEMI_AMORTIZED = "semi-amortized"  # the VAE with its encoder's output refined per test image


def spec_of(name: str):
    """The registry's spec of a row of the tour."""
    return registry.get(MODEL_OF.get(name, name))


OVER_EPOCHS = tuple(name for name in TOUR_MODELS if spec_of(name).checkpointed)  # trained epoch by epoch
BY_EM = tuple(name for name in TOUR_MODELS if not spec_of(name).checkpointed)  # fitted in one go, by EM
IMPUTED = ("mob", "vae", "gmm", "fa")  # the models that impute the missing upper halves, in this order
LATENT = "vae"  # the model whose latent space is shown
ANOMALIES = ("vae", "mob")  # the models whose least likely test images are shown
DATA_NAMES = {DataKind.BINARY: "binary", DataKind.REAL: "dequantized"}  # the digits in each kind
SEQUENCE_MODEL = "hmm"  # fitted to the tour's time series, the Nile, beside a one-state baseline
SEQUENCE_BASELINE = "hmm-1"  # one state: the years independent and identically Gaussian
TOPIC_MODELS = ("lda", "prodlda")  # fitted to the tour's text, the docstrings of SciPy
TOPIC_DATA = "scipy-docs"


@dataclasses.dataclass(frozen=True)
class TourSettings:
    """Every budget of a tour. The full one is sized for five minutes on a 2-core CPU; the quick one
    trains for a few epochs only, so that compiling the tour's programs is most of its time."""

    epochs: dict[str, int]  # training epochs of ae, vae, iwae and svi
    iwae_samples: int  # K of the IWAE objective
    iwae_lr: float  # Adam's rate for the iwae: each of its epochs costs about K VAE epochs, so it gets fewer
    em_max_iter: int  # the most EM iterations of mob, gmm and fa
    nll_samples: int  # K of the importance-sampled test NLL of the neural models
    refine_steps: int  # SVI steps of the semi-amortized refinement (and twice that for svi's test φ_i)
    estimator_samples: tuple[int, ...]  # the K of the estimator comparison
    estimator_images: int  # test images the estimator comparison averages over
    iwae_replicates: int  # independent draws of the IWAE bound per image and K, for its standard error
    impute_samples: int  # K of the VAE's importance-weighted imputation
    hmm_states: int  # K of the HMM on the Nile
    hmm_restarts: int  # its Baum–Welch restarts
    ais_steps: tuple[int, ...]  # the temperatures of AIS on the trained VAE (the last also BDMC's)
    ais_chains: int  # AIS chains per test image
    ais_images: int  # test images (and simulated ones, for BDMC) of the comparison
    mcmc_images: int  # test images whose posterior NUTS draws, beside the encoder's q
    topics: int  # K of the topic models
    lda_max_iter: int  # the most CAVI iterations of lda
    prodlda_epochs: int  # training epochs of prodlda


FULL = TourSettings(
    epochs={"ae": 100, "vae": 300, "iwae": 50, "svi": 200},
    iwae_samples=50,
    iwae_lr=3e-3,
    em_max_iter=500,
    nll_samples=5000,
    refine_steps=200,
    estimator_samples=(1, 10, 100, 1000, 5000),
    estimator_images=50,
    iwae_replicates=4,
    impute_samples=1000,
    hmm_states=2,
    hmm_restarts=8,
    ais_steps=(100, 1000),
    ais_chains=16,
    ais_images=20,
    mcmc_images=3,
    topics=12,
    lda_max_iter=200,
    prodlda_epochs=200,
)
QUICK = TourSettings(
    epochs={"ae": 3, "vae": 3, "iwae": 2, "svi": 3},
    iwae_samples=10,
    iwae_lr=3e-3,
    em_max_iter=20,
    nll_samples=100,
    refine_steps=10,
    estimator_samples=(1, 10, 100),
    estimator_images=20,
    iwae_replicates=4,
    impute_samples=100,
    hmm_states=2,
    hmm_restarts=2,
    ais_steps=(5, 20),
    ais_chains=4,
    ais_images=4,
    mcmc_images=2,
    topics=12,
    lda_max_iter=5,
    prodlda_epochs=2,
)


def image_shape(dataset: Dataset) -> tuple[int, int]:
    """The image shape of a dataset of the tour (`check_data` admits only image datasets)."""
    if dataset.image_shape is None:
        raise RunError(f"the tour draws images, and {dataset.name} has no image shape.")
    return dataset.image_shape


def fit_configs(data: str, data_dir: str | None, seed: int, settings: TourSettings) -> dict[str, app.FitConfig]:
    """The configuration of every model of the tour, by name."""
    common: dict[str, Any] = {"data": data, "data_dir": data_dir, "seed": seed}
    return {
        "mob": app.FitConfig(model="mob", max_iter=settings.em_max_iter, **common),
        "gmm": app.FitConfig(model="gmm", max_iter=settings.em_max_iter, **common),
        "fa": app.FitConfig(model="fa", max_iter=settings.em_max_iter, **common),
        "ae": app.FitConfig(model="ae", epochs=settings.epochs["ae"], **common),
        "vae": app.FitConfig(model="vae", epochs=settings.epochs["vae"], **common),
        RICH_VAE: app.FitConfig(model="vae", epochs=settings.epochs["vae"], **RICH_VAE_OPTIONS, **common),
        "iwae": app.FitConfig(
            model="iwae",
            epochs=settings.epochs["iwae"],
            num_samples=settings.iwae_samples,
            lr=settings.iwae_lr,
            **common,
        ),
        "svi": app.FitConfig(model="svi", epochs=settings.epochs["svi"], **common),
    }


def sequence_configs(seed: int, settings: TourSettings) -> dict[str, app.FitConfig]:
    """The HMM of the Nile and its one-state baseline."""
    common: dict[str, Any] = {"model": SEQUENCE_MODEL, "data": "nile", "seed": seed, "max_iter": settings.em_max_iter}
    return {
        SEQUENCE_MODEL: app.FitConfig(states=settings.hmm_states, n_init=settings.hmm_restarts, **common),
        SEQUENCE_BASELINE: app.FitConfig(states=1, **common),
    }


def sequence_story(runs: dict[str, app.Run], fits: dict, evaluations: dict, dataset: Dataset) -> dict:
    """The Nile under the HMM: its table entry (in the common metrics), the years where its Viterbi path changes
    state, each regime's mean flow, and the held-out score against the one-state baseline."""
    from lvmjax.models import hmm
    from lvmjax.time_series import NILE_FIRST_YEAR

    run = runs[SEQUENCE_MODEL]
    params = run.spec.model_params(run.params)
    years = jnp.asarray(np.concatenate([dataset.train, dataset.test]))
    states = np.asarray(jax.jit(hmm.most_likely_states)(params, years))
    changes = [int(step) + 1 for step in np.flatnonzero(np.diff(states))]
    regimes = [int(states[0]), *(int(states[step]) for step in changes)]
    evaluation = evaluations[SEQUENCE_MODEL]
    entry = {key: value for key, value in evaluation.items() if key not in _DROPPED} | {
        "data": "nile",
        "train_seconds": fits[SEQUENCE_MODEL].seconds,
        "iterations": len(fits[SEQUENCE_MODEL].history),
        "nll_method": "exact (forward algorithm)",
    }
    story = {
        "states": int(run.config.states),
        "num_train_years": int(dataset.train.shape[0]),
        "num_test_years": int(dataset.test.shape[0]),
        "change_years": [NILE_FIRST_YEAR + step for step in changes],
        "regime_means": [float(params.emission.means[state, 0]) for state in regimes],
        "test_nll": evaluation["test_nll"],
        "baseline_test_nll": evaluations[SEQUENCE_BASELINE]["test_nll"],
        "bic": evaluation["bic"],
        "baseline_bic": evaluations[SEQUENCE_BASELINE]["bic"],
    }
    return {"entry": entry, "story": story}


def topic_configs(seed: int, settings: TourSettings) -> dict[str, app.FitConfig]:
    """LDA by batch coordinate ascent and ProdLDA (the paper's encoder, Adam at 0.002) on the same K."""
    common: dict[str, Any] = {"data": TOPIC_DATA, "seed": seed, "topics": settings.topics}
    return {
        "lda": app.FitConfig(model="lda", method="cavi", max_iter=settings.lda_max_iter, **common),
        "prodlda": app.FitConfig(
            model="prodlda", epochs=settings.prodlda_epochs, hidden=(100, 100), lr=2e-3, batch_size=64, **common
        ),
    }


def topic_story(fits: dict, evaluations: dict, dataset: Dataset) -> dict:
    """Each topic model's numbers on the test documents (bound and completion perplexities, NPMI, the adjusted
    Rand index against the subpackages) and its topics' top words."""
    kept = (
        "test_perplexity",
        "test_document_perplexity",
        "test_completion_perplexity",
        "coherence_npmi",
        "coherence_npmi_per_topic",
        "adjusted_rand_index",
        "top_words",
        "test_elbo",
        "test_elbo_stderr",
    )
    return {
        "data": dataset.name,
        "num_train_documents": int(dataset.train.shape[0]),
        "num_test_documents": int(dataset.test.shape[0]),
        "vocabulary_size": int(dataset.train.shape[1]),
        "num_labels": len(dataset.label_names or ()),
        "models": {
            name: {key: evaluations[name][key] for key in kept}
            | {"train_seconds": fits[name].seconds, "iterations": len(fits[name].history)}
            for name in TOPIC_MODELS
        },
    }


def by_data(names) -> dict[str, tuple[str, ...]]:
    """The models `names` grouped by the data they take ("binary", "dequantized"), in order of appearance."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(DATA_NAMES[spec_of(name).data_kind], []).append(name)
    return {data: tuple(group) for data, group in groups.items()}


def load_datasets(configs: dict[str, app.FitConfig], advance: Advance) -> dict[str, Dataset]:
    """The data of every model, as `lvmjax fit` gives it (`app.load_data`), loaded once per data kind."""
    loaded: dict[DataKind, Dataset] = {}
    for config in configs.values():
        kind = config.spec.data_kind
        if kind not in loaded:
            if loaded:
                advance(len(loaded), DATA_NAMES[next(reversed(loaded))])
            loaded[kind] = app.load_data(config)
    return {name: loaded[config.spec.data_kind] for name, config in configs.items()}


def make_run(config: app.FitConfig, fit: app.FitResult) -> app.Run:
    """The fitted model as the command line reads a run back: its parameters, shapes, networks and spec."""
    spec = config.spec
    networks = spec.networks(config, fit.data_dim, fit.image_shape) if spec.networks is not None else None
    return app.Run(config, fit.params, fit.data_dim, fit.image_shape, networks, spec)


# --- The models' metrics -------------------------------------------------------------------


def time_refinement(run: app.Run, test, refine_steps: int, seed: int) -> float:
    """Seconds to refine the test φ_i from the encoder's output (the compiled program's run, without compiling)."""
    refine = jax.jit(functools.partial(semi_amortized.refine, amortized=run.vae, num_steps=refine_steps))
    arguments = {"key": jax.random.key(seed), "params": run.params, "data": jnp.asarray(test)}
    compiled = refine.lower(**arguments).compile()
    start = time.perf_counter()
    jax.block_until_ready(compiled(**arguments))
    return time.perf_counter() - start


_DROPPED = ("test_log_marginals", "model", "dataset")


def model_metrics(
    fits: dict[str, app.FitResult], evaluations: dict[str, dict], refine_seconds: float, refine_steps: int
) -> dict:
    """One entry per model of the tour, and one for the semi-amortized VAE (the VAE with its refined q)."""
    models = {}
    for name in TOUR_MODELS:
        spec = spec_of(name)
        entry = {key: value for key, value in evaluations[name].items() if key not in _DROPPED}
        nll_method = spec.nll_method
        if nll_method == "importance sampling":
            nll_method += f", K = {entry['num_samples']}"
        entry |= {
            "data": DATA_NAMES[spec.data_kind],
            "train_seconds": fits[name].seconds,
            "iterations": len(fits[name].history),
            "nll_method": nll_method,
        }
        if spec.nll_method == "importance sampling" and not spec.encoder:
            # φ_i fitted to each test datapoint, no encoder to amortize: its whole gap is the approximation gap
            entry["approximation_gap"] = -entry["test_nll"] - entry["test_elbo"]
        models[name] = entry
    vae = models["vae"]
    models[SEMI_AMORTIZED] = {
        "data": vae["data"],
        "train_seconds": vae["train_seconds"],
        "refine_seconds": refine_seconds,
        "refine_steps": refine_steps,
        "num_test": vae["num_test"],
        "num_samples": vae["num_samples"],
        "test_elbo": vae["refined_elbo"],
        "test_nll": vae["test_nll"],
        "test_nll_stderr": vae["test_nll_stderr"],
        "approximation_gap": vae["approximation_gap"],
        "nll_method": vae["nll_method"],
        "amortization_gap_closed": vae["amortization_gap"],
    }
    return models


# --- The estimators of log p(x) as K grows --------------------------------------------------


@functools.partial(jax.jit, static_argnames=("vae", "num_samples", "replicates"))
def _estimators_at(key, vae, params, images, num_samples: int, replicates: int):
    """Naive MC, importance sampling and `replicates` draws of the IWAE bound, with K samples, per image."""
    chunk_size = math.gcd(num_samples, 500)  # bounded memory for large K

    def per_image(args):
        index, x = args
        key_naive, key_is, key_iwae = jax.random.split(jax.random.fold_in(key, index), 3)
        q = vae.encode(params, x)
        naive = log_marginal_naive_mc(key_naive, vae.model, params, x, num_samples, chunk_size=chunk_size)
        importance = log_marginal_is(key_is, vae.model, params, q, x, num_samples, chunk_size=chunk_size)
        bounds = jax.vmap(lambda r: iwae_bound(jax.random.fold_in(key_iwae, r), vae.model, params, q, x, num_samples))(
            jnp.arange(replicates)
        )
        return naive, importance, bounds

    return jax.lax.map(per_image, (jnp.arange(images.shape[0]), images))


def _mean_and_stderr(values: np.ndarray, stderrs: np.ndarray) -> tuple[float, float]:
    """The mean over images and its standard error sqrt(Σ se_i²) / n (independent draws per image)."""
    return float(np.mean(values)), float(np.sqrt(np.sum(np.square(stderrs))) / len(values))


def estimator_comparison(run: app.Run, test, settings: TourSettings, seed: int, advance: Advance) -> dict:
    """Naive MC (prior proposal), importance sampling (the encoder's q) and the IWAE bound, as K grows.

    The same key serves every K, so by the estimators' fold_in convention a larger K extends
    the draws of a smaller one. The naive and importance-sampled estimates report the delta
    method's standard error of one estimate; the IWAE bound E[log (1/K) Σ_k w_k] is estimated
    by the mean of independent replicates, with the standard error of that mean.
    """
    images = jnp.asarray(test[: settings.estimator_images])
    key = jax.random.fold_in(jax.random.key(seed), 1)
    result: dict[str, Any] = {
        "num_images": int(images.shape[0]),
        "num_samples": list(settings.estimator_samples),
        "iwae_replicates": settings.iwae_replicates,
        "naive_mc": {"estimate": [], "stderr": [], "ess": []},
        "importance_sampling": {"estimate": [], "stderr": [], "ess": []},
        "iwae_bound": {"estimate": [], "stderr": []},
    }
    for done, num_samples in enumerate(settings.estimator_samples):
        advance(done, f"K = {num_samples}")
        naive, importance, bounds = jax.device_get(
            _estimators_at(key, run.vae, run.params, images, num_samples, settings.iwae_replicates)
        )
        for estimator, estimate in (("naive_mc", naive), ("importance_sampling", importance)):
            mean, stderr = _mean_and_stderr(estimate.log_marginal, estimate.stderr)
            result[estimator]["estimate"].append(mean)
            result[estimator]["stderr"].append(stderr if num_samples > 1 else None)  # K = 1 has none
            result[estimator]["ess"].append(float(np.mean(estimate.ess)))
        bounds = np.asarray(bounds, np.float64)
        mean, stderr = _mean_and_stderr(
            bounds.mean(axis=1), bounds.std(axis=1, ddof=1) / math.sqrt(settings.iwae_replicates)
        )
        result["iwae_bound"]["estimate"].append(mean)
        result["iwae_bound"]["stderr"].append(stderr)
    return result


# --- The gold standard: AIS, BDMC and MCMC on the trained VAE ----------------------------------


def _timed_compiled(function, *arguments):
    """(result, seconds) of `function(*arguments)` run compiled, compilation not counted."""
    compiled = jax.jit(function).lower(*arguments).compile()
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(*arguments))
    return result, time.perf_counter() - start


def gold_standard(run: app.Run, test, settings: TourSettings, seed: int, advance: Advance) -> dict:
    """On the trained VAE: log p(x) of a few test images by importance sampling from the encoder's q, by AIS
    from the same q at each number of temperatures, BDMC's bounds on as many images simulated from the model,
    and NUTS draws of p(z | x) of a few test images beside the encoder's q; the seconds each took (compiled)."""
    from lvmjax import ais, mcmc

    vae, params = run.vae, run.params
    if vae is None:
        raise RunError(f"the tour's comparison of AIS and MCMC needs the networks of {run.config.model}.")
    images = jnp.asarray(test[: settings.ais_images])
    key = jax.random.fold_in(jax.random.key(seed), 4)
    chains = settings.ais_chains

    def mean_and_stderr(estimate) -> tuple[float, float]:
        return _mean_and_stderr(np.asarray(estimate.log_marginal), np.asarray(estimate.stderr))

    num_is = settings.nll_samples

    def by_is(images):
        return jax.vmap(
            lambda i, x: log_marginal_is(
                jax.random.fold_in(key, i),
                vae.model,
                params,
                vae.encode(params, x),
                x,
                num_is,
                chunk_size=math.gcd(num_is, 500),
            )
        )(jnp.arange(images.shape[0]), images)

    advance(0, f"importance sampling, K = {num_is}")
    estimate, seconds = _timed_compiled(by_is, images)
    rows = [
        {
            "estimator": f"importance sampling, K = {num_is}",
            "seconds": seconds,
            **dict(zip(("estimate", "stderr"), mean_and_stderr(estimate), strict=True)),
        }
    ]
    for done, steps in enumerate(settings.ais_steps):
        advance(1 + done, f"AIS, {steps} steps")

        def by_ais(images, steps=steps):
            return jax.vmap(
                lambda i, x: ais.log_marginal_ais(
                    jax.random.fold_in(key, i), vae.model, params, x, steps, chains, proposal=vae.encode(params, x)
                )
            )(jnp.arange(images.shape[0]), images)

        estimate, seconds = _timed_compiled(by_ais, images)
        rows.append(
            {
                "estimator": f"AIS, {steps} steps × {chains} chains",
                "seconds": seconds,
                **dict(zip(("estimate", "stderr"), mean_and_stderr(estimate), strict=True)),
            }
        )

    steps = settings.ais_steps[-1]
    advance(1 + len(settings.ais_steps), f"BDMC, {steps} steps")

    def by_bdmc(key):
        key_data, key_bdmc = jax.random.split(key)
        z, x = jax.vmap(lambda k: sample(k, vae.model, params))(jax.random.split(key_data, settings.ais_images))
        return jax.vmap(
            lambda i, x_i, z_i: ais.bdmc(jax.random.fold_in(key_bdmc, i), vae.model, params, x_i, z_i, steps, chains)
        )(jnp.arange(settings.ais_images), x, z)

    bounds, bdmc_seconds = _timed_compiled(by_bdmc, jax.random.fold_in(key, 1))
    lower, lower_se = mean_and_stderr(bounds.lower)
    upper, upper_se = mean_and_stderr(bounds.upper)

    advance(2 + len(settings.ais_steps), "NUTS")
    shown = jnp.asarray(test[: settings.mcmc_images])

    def by_nuts(images):
        return jax.vmap(
            lambda i, x: mcmc.sample_posterior(
                jax.random.fold_in(key, 100 + i), vae.model, params, x, 250, num_warmup=250, num_chains=4
            )
        )(jnp.arange(images.shape[0]), images)

    draws, nuts_seconds = _timed_compiled(by_nuts, shown)
    encoder = jax.vmap(
        lambda i, x: vae.encode(params, x).sample(seed=jax.random.fold_in(key, 200 + i), sample_shape=1000)
    )(jnp.arange(shown.shape[0]), shown)
    return {
        "metrics": {
            "num_images": int(images.shape[0]),
            "rows": rows,
            "bdmc": {
                "num_simulated": settings.ais_images,
                "steps": steps,
                "chains": chains,
                "lower": lower,
                "lower_stderr": lower_se,
                "upper": upper,
                "upper_stderr": upper_se,
                "seconds": bdmc_seconds,
            },
            "nuts": {
                "num_images": int(shown.shape[0]),
                "seconds": nuts_seconds,
                "max_rhat": float(jnp.max(draws.info.rhat)),
                "min_ess": float(jnp.min(draws.info.ess)),
            },
        },
        "nuts_samples": np.asarray(draws.samples),
        "encoder_samples": np.asarray(encoder),
    }


# --- What the models are for ---------------------------------------------------------------


def imputation(
    runs: dict[str, app.Run], datasets: dict[str, Dataset], settings: TourSettings, seed: int, advance: Advance
) -> dict:
    """Every test image with its upper half missing, imputed by each model of `IMPUTED` (`app.figures.impute`,
    as `lvmjax impute` does); the squared error on the missing half, against the training mean's."""
    observed = applications.top_half_missing(image_shape(datasets[IMPUTED[0]]))
    key = jax.random.fold_in(jax.random.key(seed), 2)  # for the models that impute by sampling
    imputed = {}
    for done, name in enumerate(IMPUTED):
        advance(done, name)
        imputed[name] = app_figures.impute(key, runs[name], datasets[name].test, observed, settings.impute_samples)

    def squared_error(filled, truth):
        return app_figures.squared_error(filled, truth, observed)

    metrics = {"mask": "upper half of every test image missing", "vae_num_samples": settings.impute_samples}
    for data, names in by_data(IMPUTED).items():
        dataset = datasets[names[0]]
        errors = {name: squared_error(imputed[name], datasets[name].test) for name in names}
        errors["training mean"] = squared_error(
            np.broadcast_to(dataset.train.mean(0), dataset.test.shape), dataset.test
        )
        metrics[f"{data}_mse"] = errors
    return {"observed": np.asarray(observed), "imputed": imputed, "metrics": metrics}


def latent_space(run: app.Run, dataset: Dataset) -> dict:
    """The model's codes E[z | x] (`app.figures.latent_codes`), projected onto their first two principal axes."""
    codes, labels, _ = app_figures.latent_codes(run, dataset)
    codes = np.asarray(codes, np.float64)
    embedding, ratio = app_figures.principal_plane(codes)
    return {
        "embedding": embedding,
        "labels": labels,
        "metrics": {
            "latent_dim": int(codes.shape[1]),
            "projection": "PCA of the encoder means (numpy SVD)",
            "explained_variance_ratio": ratio,
        },
    }


def least_likely(log_marginals, labels, count: int = 10) -> list[dict]:
    """The `count` test images of lowest log p(x): the anomaly scores −log p(x), highest first."""
    scores = -np.asarray(log_marginals, np.float64)
    order = np.argsort(-scores)[:count]
    return [
        {"index": int(index), "label": int(labels[index]) if labels is not None else None, "nll": float(scores[index])}
        for index in order
    ]

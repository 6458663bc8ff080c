"""The tour: every model of lvmjax fitted to one dataset, evaluated, compared and drawn in one report.

    metrics = run_tour("tour")               # what `lvmjax tour --out tour` calls
    print(format_table(metrics))

On one train/test split of the digits it fits the seed texts' models in their order:
the mixture of Bernoullis (EM) on the binary images; the Gaussian mixture and factor
analysis (EM) on the dequantized ones; then, on the binary images, the deterministic
autoencoder, the VAE (amortized inference), the IWAE (K = 50), non-amortized SVI (one
φ_i per training image) and the semi-amortized VAE (the encoder's φ(x) refined per test
image). Every model is trained by `runs.fit` and evaluated by `runs.evaluate`, the code
behind `lvmjax fit` and `lvmjax evaluate`.

It then shows, on the trained VAE, how the estimators of log p(x) behave as K grows
(naive Monte Carlo from the prior, importance sampling from the encoder's q, the IWAE
bound; seed text §3.2), and what the models are for: samples, reconstructions,
interpolations, imputation of a missing upper half, the latent space and anomaly
scores. The directory it writes holds report.html (self-contained), report.md,
metrics.json and the figures as PNG; it is written whole at the end or not at all.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import functools
import html
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import __version__, applications, figures, plots, runs, svi
from lvmjax import data as data_lib
from lvmjax.estimators import iwae_bound, log_marginal_is, log_marginal_naive_mc
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

__all__ = ["FULL", "QUICK", "TOUR_MODELS", "TourSettings", "format_table", "machine_info", "run_tour"]

Progress = Callable[[str, int, int, str], None]  # progress(stage, done, total, status)

TOUR_MODELS = ("mob", "gmm", "fa", "ae", "vae", "iwae", "svi")
SEMI_AMORTIZED = "semi-amortized"  # the VAE with its encoder's output refined per test image
BINARY_MODELS = ("mob", "ae", "vae", "iwae", "svi", SEMI_AMORTIZED)
CONTINUOUS_MODELS = ("gmm", "fa")  # fitted to the dequantized digits
FIGURES_DIR = "figures"
NUM_GENERATED = 100


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


FULL = TourSettings(epochs={"ae": 100, "vae": 300, "iwae": 50, "svi": 200}, iwae_samples=50, iwae_lr=3e-3,
                    em_max_iter=500, nll_samples=5000, refine_steps=200,
                    estimator_samples=(1, 10, 100, 1000, 5000), estimator_images=50, iwae_replicates=4,
                    impute_samples=1000)
QUICK = TourSettings(epochs={"ae": 3, "vae": 3, "iwae": 2, "svi": 3}, iwae_samples=10, iwae_lr=3e-3,
                     em_max_iter=20, nll_samples=100, refine_steps=10,
                     estimator_samples=(1, 10, 100), estimator_images=20, iwae_replicates=4,
                     impute_samples=100)


def run_tour(out_dir: str | os.PathLike, data: str = "digits", quick: bool = False, seed: int = 0,
             progress: Progress | None = None, data_dir: str | None = None, overwrite: bool = False) -> dict:
    """Fits, evaluates and draws every model of the tour, and writes the report to `out_dir`.

    Args:
      out_dir: the directory to create: report.html, report.md, metrics.json and
        figures/*.png. It must not exist (or be an empty directory); everything is
        written to a temporary sibling renamed into place at the end.
      data: the dataset; the tour needs binary and real-valued versions of an image
        dataset, which only "digits" has.
      quick: the `QUICK` budgets (tiny epochs and K) instead of `FULL`; the report has
        the same structure, its numbers are only a smoke test.
      seed: of every model and every draw.
      progress: `progress(stage, done, total, status)`, called as each stage starts,
        advances (training epochs included) and ends.
      data_dir: where the dataset's files are (unused by digits).
      overwrite: replace an existing out_dir if it holds an earlier tour's report
        (its metrics.json says so); only once the new report is complete.

    Returns:
      The metrics, as written to metrics.json.

    Raises:
      runs.RunError: for an existing out_dir or a dataset the tour cannot show.
      data.DataError: for an unknown dataset.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir, overwrite)
    _check_data(data)
    settings = QUICK if quick else FULL
    stages = _Stages(progress)
    load_average_start = _load_average()

    with stages("load data") as advance:
        binary = runs.load_data(runs.FitConfig(model="vae", data=data, data_dir=data_dir, seed=seed))
        advance(1, "binary")
        continuous = runs.load_data(runs.FitConfig(model="gmm", data=data, data_dir=data_dir, seed=seed))
    configs = _configs(data, data_dir, seed, settings)
    datasets = {model: continuous if model in CONTINUOUS_MODELS else binary for model in TOUR_MODELS}

    fits = {}
    for model in TOUR_MODELS:
        config = configs[model]
        epochs = config.epochs if model in runs.NEURAL_MODELS else 1
        with stages(f"fit {model}", epochs) as advance:
            if model in runs.NEURAL_MODELS:
                def on_epoch(epoch, entry, advance=advance):
                    advance(epoch, f"objective {entry['train_objective']:.2f}")
            else:
                advance(0, "EM")
                on_epoch = None
            fits[model] = runs.fit(config, datasets[model], on_epoch)

    vae = runs.build_model(configs["vae"], binary.train.shape[1], binary.image_shape)
    with stages("evaluate", len(TOUR_MODELS) + 1) as advance:
        evaluations = {}
        for done, model in enumerate(TOUR_MODELS):
            advance(done, model)
            evaluations[model] = runs.evaluate(configs[model], fits[model].params, datasets[model],
                                               settings.nll_samples, settings.refine_steps, seed,
                                               per_datapoint=True)
        advance(len(TOUR_MODELS), "refinement time")
        refine_seconds = _time_refinement(vae, fits["vae"].params, binary.test, settings.refine_steps, seed)
    models = _model_metrics(fits, evaluations, refine_seconds, settings.refine_steps)

    with stages("estimators versus K", len(settings.estimator_samples)) as advance:
        estimators = _estimator_comparison(vae, fits["vae"].params, binary.test, settings, seed, advance)

    with stages("imputation", 4) as advance:
        imputation = _imputation(vae, fits, binary, continuous, settings, seed, advance)

    with stages("latent space") as advance:
        latent = _latent_space(vae, fits["vae"].params, binary)

    anomalies = {model: _least_likely(evaluations[model]["test_log_marginals"], binary.test_labels)
                 for model in ("vae", "mob")}

    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    try:
        with stages("figures", len(_FIGURES)) as advance:
            captions = _draw_figures(staging / FIGURES_DIR, vae, configs, fits, binary, continuous, estimators,
                                     imputation, latent, anomalies, seed, advance)
        metrics = {
            "tour": {"lvmjax": __version__, "data": binary.name, "quick": quick, "seed": seed,
                     "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "num_train": int(binary.train.shape[0]), "num_test": int(binary.test.shape[0])},
            "machine": machine_info() | {"load_average_start": load_average_start},
            "settings": dataclasses.asdict(settings) | {"configs": {model: dataclasses.asdict(config)
                                                                     for model, config in configs.items()}},
            "models": models,
            "estimators": estimators,
            "imputation": imputation["metrics"],
            "latent_space": latent["metrics"],
            "anomalies": anomalies,
            "figures": {name: f"{FIGURES_DIR}/{name}.png" for name in captions},
            "stages": {},
        }
        with stages("report", 3) as advance:
            metrics["stages"] = dict(stages.seconds)
            metrics["machine"]["load_average_end"] = _load_average()
            metrics["total_seconds"] = time.perf_counter() - started
            blocks = _report_blocks(metrics, captions)
            (staging / "report.md").write_text(_render_markdown(blocks), encoding="utf-8")
            advance(1, "report.md")
            (staging / "report.html").write_text(_render_html(blocks, staging), encoding="utf-8")
            advance(2, "report.html")
        metrics["stages"] = dict(stages.seconds)
        metrics = _jsonable(metrics)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
        _check_out_dir(out_dir, overwrite)  # nothing appeared there while the tour ran
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metrics


# --- Input checks ------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, overwrite: bool = False) -> None:
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        return  # an empty directory is replaced by the final rename
    if overwrite and out_dir.is_dir():
        if _is_tour_report(out_dir):
            return
        raise runs.RunError(f"{out_dir} is not the report of an earlier tour (it has no tour metrics.json); "
                            "--overwrite replaces only those, so choose a new --out (nothing in it was changed).")
    if out_dir.exists():
        kind = "directory" if out_dir.is_dir() else "file"
        raise runs.RunError(f"{out_dir} already exists (a non-empty {kind}); choose a new --out, or "
                            "--overwrite to replace an earlier tour's report (nothing in it was changed).")


def _is_tour_report(directory: Path) -> bool:
    try:
        return "tour" in json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _replace_dir(staging: Path, out_dir: Path) -> None:
    """Renames `staging` to `out_dir`; an existing non-empty `out_dir` is set aside first and removed after."""
    if not (out_dir.is_dir() and any(out_dir.iterdir())):
        os.rename(staging, out_dir)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.replaced-", dir=out_dir.parent))
    os.rename(out_dir, aside / out_dir.name)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(aside / out_dir.name, out_dir)
        raise
    finally:
        if out_dir.exists():
            shutil.rmtree(aside, ignore_errors=True)


def _check_data(data: str) -> None:
    if data == "digits":
        return
    if data not in data_lib.DATASETS and Path(data).suffix.lower() not in data_lib.FILE_SUFFIXES:
        data_lib.load_dataset(data)  # raises the DataError that names the known datasets
    raise runs.RunError(f"the tour needs an image dataset with a binary and a real-valued version, and only "
                        f"digits has both ({data!r} has no real-valued version or no image shape); use "
                        "'lvmjax fit' for other data.")


def _configs(data: str, data_dir: str | None, seed: int, settings: TourSettings) -> dict[str, runs.FitConfig]:
    common = {"data": data, "data_dir": data_dir, "seed": seed}
    return {
        "mob": runs.FitConfig(model="mob", max_iter=settings.em_max_iter, **common),
        "gmm": runs.FitConfig(model="gmm", max_iter=settings.em_max_iter, **common),
        "fa": runs.FitConfig(model="fa", max_iter=settings.em_max_iter, **common),
        "ae": runs.FitConfig(model="ae", epochs=settings.epochs["ae"], **common),
        "vae": runs.FitConfig(model="vae", epochs=settings.epochs["vae"], **common),
        "iwae": runs.FitConfig(model="iwae", epochs=settings.epochs["iwae"], num_samples=settings.iwae_samples,
                               lr=settings.iwae_lr, **common),
        "svi": runs.FitConfig(model="svi", epochs=settings.epochs["svi"], **common),
    }


# --- Stages and the machine --------------------------------------------------------------


class _Stages:
    """Runs named stages, reporting progress and keeping the wall-clock seconds of each."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, total: int = 1):
        def advance(done: int, status: str = "") -> None:
            if self.progress is not None:
                self.progress(name, done, total, status)

        start = time.perf_counter()
        advance(0, "started")
        yield advance
        self.seconds[name] = time.perf_counter() - start
        advance(total, f"done in {self.seconds[name]:.1f}s")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def machine_info() -> dict:
    """The CPU, its cores, the operating system and the JAX that ran the tour."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    device = jax.devices()[0]
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "os": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
            "device": device.device_kind, "num_devices": jax.device_count()}


# --- Metrics -------------------------------------------------------------------------------


def _time_refinement(vae, params, test, refine_steps: int, seed: int) -> float:
    """Seconds to refine the test φ_i from the encoder's output (the compiled program's run, without compiling)."""
    refine = jax.jit(functools.partial(svi.refine, amortized=vae, num_steps=refine_steps))
    arguments = {"key": jax.random.PRNGKey(seed), "params": params, "data": jnp.asarray(test)}
    compiled = refine.lower(**arguments).compile()
    start = time.perf_counter()
    jax.block_until_ready(compiled(**arguments))
    return time.perf_counter() - start


_DROPPED = ("test_log_marginals", "model", "dataset")


def _model_metrics(fits, evaluations, refine_seconds: float, refine_steps: int) -> dict:
    models = {}
    for model in TOUR_MODELS:
        entry = {key: value for key, value in evaluations[model].items() if key not in _DROPPED}
        entry |= {"data": "dequantized" if model in CONTINUOUS_MODELS else "binary",
                  "train_seconds": fits[model].seconds, "iterations": len(fits[model].history),
                  "nll_method": ("exact" if model in runs.CLASSICAL_MODELS else None if model == "ae"
                                 else f"importance sampling, K = {evaluations[model]['num_samples']}")}
        if model in runs.CLASSICAL_MODELS:
            entry["num_samples"] = None
        if model == "svi":  # fitted φ_i, not amortized: its whole gap is the approximation gap
            entry["approximation_gap"] = -entry["test_nll"] - entry["test_elbo"]
        models[model] = entry
    vae = models["vae"]
    models[SEMI_AMORTIZED] = {
        "data": "binary", "train_seconds": vae["train_seconds"], "refine_seconds": refine_seconds,
        "refine_steps": refine_steps, "num_test": vae["num_test"], "num_samples": vae["num_samples"],
        "test_elbo": vae["refined_elbo"], "test_nll": vae["test_nll"], "test_nll_stderr": vae["test_nll_stderr"],
        "approximation_gap": vae["approximation_gap"], "nll_method": vae["nll_method"],
        "amortization_gap_closed": vae["amortization_gap"],
    }
    return models


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
        bounds = jax.vmap(lambda r: iwae_bound(jax.random.fold_in(key_iwae, r), vae.model, params, q, x,
                                               num_samples))(jnp.arange(replicates))
        return naive, importance, bounds

    return jax.lax.map(per_image, (jnp.arange(images.shape[0]), images))


def _mean_and_stderr(values: np.ndarray, stderrs: np.ndarray) -> tuple[float, float]:
    """The mean over images and its standard error sqrt(Σ se_i²) / n (independent draws per image)."""
    return float(np.mean(values)), float(np.sqrt(np.sum(np.square(stderrs))) / len(values))


def _estimator_comparison(vae, params, test, settings: TourSettings, seed: int, advance) -> dict:
    """Naive MC (prior proposal), importance sampling (the encoder's q) and the IWAE bound, as K grows.

    The same key serves every K, so by the estimators' fold_in convention a larger K extends
    the draws of a smaller one. The naive and importance-sampled estimates report the delta
    method's standard error of one estimate; the IWAE bound E[log (1/K) Σ_k w_k] is estimated
    by the mean of independent replicates, with the standard error of that mean.
    """
    images = jnp.asarray(test[: settings.estimator_images])
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    result = {"num_images": int(images.shape[0]), "num_samples": list(settings.estimator_samples),
              "iwae_replicates": settings.iwae_replicates,
              "naive_mc": {"estimate": [], "stderr": [], "ess": []},
              "importance_sampling": {"estimate": [], "stderr": [], "ess": []},
              "iwae_bound": {"estimate": [], "stderr": []}}
    for done, num_samples in enumerate(settings.estimator_samples):
        advance(done, f"K = {num_samples}")
        naive, importance, bounds = jax.device_get(
            _estimators_at(key, vae, params, images, num_samples, settings.iwae_replicates))
        for name, estimate in (("naive_mc", naive), ("importance_sampling", importance)):
            mean, stderr = _mean_and_stderr(estimate.log_marginal, estimate.stderr)
            result[name]["estimate"].append(mean)
            result[name]["stderr"].append(stderr if num_samples > 1 else None)  # K = 1 has none
            result[name]["ess"].append(float(np.mean(estimate.ess)))
        bounds = np.asarray(bounds, np.float64)
        mean, stderr = _mean_and_stderr(bounds.mean(axis=1),
                                        bounds.std(axis=1, ddof=1) / math.sqrt(settings.iwae_replicates))
        result["iwae_bound"]["estimate"].append(mean)
        result["iwae_bound"]["stderr"].append(stderr)
    return result


def _imputation(vae, fits, binary, continuous, settings: TourSettings, seed: int, advance) -> dict:
    """Every test image with its upper half missing, imputed by each model; the squared error on the missing half."""
    observed = applications.top_half_missing(binary.image_shape)
    test_binary, test_continuous = jnp.asarray(binary.test), jnp.asarray(continuous.test)
    mob = bernoulli_mixture.Params(**fits["mob"].params)
    gmm = gaussian_mixture.Params(**fits["gmm"].params)
    fa = linear_gaussian.Params(**fits["fa"].params)

    def batch(impute, params, data):
        return np.asarray(jax.jit(jax.vmap(lambda x: impute(params, x, observed)[1]))(data))

    imputed = {}
    advance(0, "mob")
    imputed["mob"] = batch(applications.impute_bernoulli_mixture, mob, test_binary)
    advance(1, "vae")
    imputed["vae"] = np.asarray(figures.impute_vae_all(jax.random.fold_in(jax.random.PRNGKey(seed), 2), vae,
                                                       fits["vae"].params, test_binary, observed,
                                                       settings.impute_samples))
    advance(2, "gmm")
    imputed["gmm"] = batch(applications.impute_gaussian_mixture, gmm, test_continuous)
    advance(3, "fa")
    imputed["fa"] = batch(applications.impute_linear_gaussian, fa, test_continuous)

    def squared_error(filled, truth):
        return figures.squared_error(filled, truth, observed)

    metrics = {"mask": "upper half of every test image missing", "vae_num_samples": settings.impute_samples,
               "binary_mse": {model: squared_error(imputed[model], binary.test) for model in ("mob", "vae")},
               "dequantized_mse": {model: squared_error(imputed[model], continuous.test) for model in ("gmm", "fa")}}
    metrics["binary_mse"]["training mean"] = squared_error(np.broadcast_to(binary.train.mean(0), binary.test.shape),
                                                           binary.test)
    metrics["dequantized_mse"]["training mean"] = squared_error(
        np.broadcast_to(continuous.train.mean(0), continuous.test.shape), continuous.test)
    return {"observed": np.asarray(observed), "imputed": imputed, "metrics": metrics}


def _latent_space(vae, params, binary) -> dict:
    """The encoder's means E_q[z | x] of the test images, projected onto their first two principal axes."""
    means = np.asarray(applications.latent_means(jax.jit(vae.encode), params, jnp.asarray(binary.test)), np.float64)
    embedding, ratio = figures.principal_plane(means)
    return {"embedding": embedding,
            "metrics": {"latent_dim": int(means.shape[1]), "projection": "PCA of the encoder means (numpy SVD)",
                        "explained_variance_ratio": ratio}}


def _least_likely(log_marginals, labels, count: int = 10) -> list[dict]:
    """The `count` test images of lowest log p(x): the anomaly scores −log p(x), highest first."""
    scores = -np.asarray(log_marginals, np.float64)
    order = np.argsort(-scores)[:count]
    return [{"index": int(index), "label": int(labels[index]) if labels is not None else None,
             "nll": float(scores[index])} for index in order]


# --- Figures -------------------------------------------------------------------------------

_FIGURES = ("samples_mob", "samples_gmm", "samples_fa", "samples_vae", "samples_iwae", "samples_svi",
            "reconstructions", "interpolations", "imputation_binary", "imputation_dequantized", "latent_space",
            "training_neural", "training_em", "estimators", "anomalies")


def _draw_figures(directory: Path, vae, configs, fits, binary, continuous, estimators, imputation, latent,
                  anomalies, seed: int, advance) -> dict[str, str]:
    """Draws and saves every figure; returns name -> caption."""
    shape = binary.image_shape
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 3)
    captions: dict[str, str] = {}

    def save(name, figure, caption):
        plots.save(figure, directory / f"{name}.png")
        captions[name] = caption
        advance(len(captions), name)

    classical = {"mob": (bernoulli_mixture.model, bernoulli_mixture.Params(**fits["mob"].params)),
                 "gmm": (gaussian_mixture.model, gaussian_mixture.Params(**fits["gmm"].params)),
                 "fa": (linear_gaussian.model, linear_gaussian.Params(**fits["fa"].params))}
    descriptions = {
        "mob": "Bernoulli means E[x | z] of z ~ p(z): each is one of the mixture's prototypes, so at most "
               f"{configs['mob'].components} distinct images appear",
        "gmm": "samples x ~ p(x | z), z ~ p(z), of dequantized pixels, clipped to [0, 1] for display",
        "fa": "samples x ~ p(x | z) = N(W z + b, Ψ), z ~ N(0, I), of dequantized pixels, clipped to [0, 1] "
              "for display",
    }
    for index, model in enumerate(("mob", "gmm", "fa", "vae", "iwae", "svi")):
        model_key = jax.random.fold_in(key, index)
        if model in classical:
            lvm, params = classical[model]
            images = figures.ancestral(model_key, lvm, params, NUM_GENERATED, means=model == "mob")
            description = descriptions[model]
        else:
            images = figures.ancestral(model_key, vae.model, {"decoder": fits[model].params["decoder"]}, NUM_GENERATED,
                                means=True)
            description = "Bernoulli means E[x | z] (pixel probabilities) of z ~ N(0, I) through the decoder"
        title = f"{model}: {NUM_GENERATED} generated digits"
        save(f"samples_{model}", plots.image_mosaic(np.clip(np.asarray(images), 0, 1), shape, title=title),
             f"{model}: {NUM_GENERATED} generated images by ancestral sampling; {description}.")

    chosen = figures.one_per_label(binary.test_labels)
    originals = jnp.asarray(binary.test[chosen])
    rows = {"test image": originals}
    for model in ("ae", "vae"):
        rows[model] = figures.reconstruct_all(vae, fits[model].params, originals)
    save("reconstructions", plots.image_rows({label: np.asarray(images) for label, images in rows.items()}, shape,
                                             title="reconstructions"),
         "One test image of each digit and its reconstructions E[x | z = f(x)], with f(x) the encoder's mean: "
         "the deterministic autoencoder (reconstruction only) and the VAE (ELBO).")

    labels = binary.test_labels
    pairs = [(0, 1), (2, 3), (4, 5)] if len(chosen) >= 6 else [(0, 1)]
    starts = originals[np.array([pair[0] for pair in pairs])]
    ends = originals[np.array([pair[1] for pair in pairs])]
    paths = {model: np.asarray(figures.interpolate_all(vae, fits[model].params, starts, ends, 10))
             for model in ("ae", "vae")}
    interpolation_rows = {}
    for index, (first, second) in enumerate(pairs):
        names = (labels[chosen[first]], labels[chosen[second]]) if labels is not None else (first, second)
        for model in ("ae", "vae"):
            interpolation_rows[f"{model} {names[0]}→{names[1]}"] = paths[model][index]
    save("interpolations",
         plots.image_rows(interpolation_rows, shape, title="interpolation between the codes of two digits"),
         "Decoded means E[x | z] along the straight line from the code of one test digit to the code of "
         "another (`amortized.interpolate`), for the autoencoder and the VAE. The VAE's KL term keeps its "
         "codes where the prior puts mass, so the path between two codes decodes to digits too.")

    observed = np.broadcast_to(imputation["observed"], (len(chosen), imputation["observed"].shape[0]))
    imputed = imputation["imputed"]
    save("imputation_binary",
         plots.imputation_grid(binary.test[chosen], observed, {"mob": imputed["mob"][chosen],
                                                               "vae": imputed["vae"][chosen]}, shape,
                               title="binary digits, upper half missing"),
         "Imputation of the missing upper half (red) of binary test digits: p(x_d = 1 | x_o) for every missing "
         "pixel, exact under the mixture of Bernoullis, importance-weighted under the VAE "
         f"(`applications.impute_vae`, K = {imputation['metrics']['vae_num_samples']}).")
    save("imputation_dequantized",
         plots.imputation_grid(continuous.test[chosen], observed, {"gmm": np.clip(imputed["gmm"][chosen], 0, 1),
                                                                   "fa": np.clip(imputed["fa"][chosen], 0, 1)},
                               shape, title="dequantized digits, upper half missing"),
         "Imputation of the missing upper half of the same test digits, dequantized: the exact conditional "
         "mean E[x_m | x_o] under the Gaussian mixture and under factor analysis (clipped to [0, 1] for display).")

    figure = plots.latent_scatter(latent["embedding"], binary.test_labels,
                                  title="VAE codes of the test digits (PCA to 2-D)")
    figure.axes[0].set_xlabel("principal axis 1 of E_q[z | x]")
    figure.axes[0].set_ylabel("principal axis 2 of E_q[z | x]")
    ratio = latent["metrics"]["explained_variance_ratio"]
    save("latent_space", figure,
         f"The VAE encoder's means E_q[z | x] of the {len(binary.test)} test digits ({latent['metrics']['latent_dim']}"
         f"-dimensional), projected to 2-D by PCA (numpy SVD of the centred means; the two axes hold "
         f"{100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of their variance), coloured by digit label.")

    neural = {model: [entry["train_objective"] for entry in fits[model].history] for model in ("ae", "vae", "iwae",
                                                                                               "svi")}
    save("training_neural",
         plots.curves({"ae: log p(x | f(x))": neural["ae"], "vae: ELBO": neural["vae"],
                       f"iwae: IWAE bound, K = {configs['iwae'].samples}": neural["iwae"],
                       "svi: ELBO (per-datapoint φ_i)": neural["svi"]},
                      "epoch", "training objective per image (nats)", title="training, binary digits"),
         "Training objective per epoch (mean over the epoch's minibatches) of the neural models on the binary "
         "digits. The autoencoder's objective is a reconstruction log-likelihood, not a bound on log p(x).")
    em = {model: [entry["train_objective"] for entry in fits[model].history] for model in ("mob", "gmm", "fa")}
    save("training_em",
         plots.curves({"mob (binary)": em["mob"], "gmm (dequantized)": em["gmm"], "fa (dequantized)": em["fa"]},
                      "EM iteration", "mean training log-likelihood (nats)", title="EM"),
         "EM's objective at each iterate: the mean training log-likelihood; for the mixture of Bernoullis, "
         "fitted by MAP-EM, plus log p(θ) / N of its Beta prior. The binary and dequantized models are in "
         "different units.")

    ks = estimators["num_samples"]

    def series(name):
        entry = estimators[name]
        return entry["estimate"], [math.nan if value is None else value for value in entry["stderr"]]

    save("estimators",
         plots.estimates_versus_samples(
             ks, {"naive MC (prior proposal)": series("naive_mc"),
                  "importance sampling (encoder q)": series("importance_sampling"),
                  "IWAE bound": series("iwae_bound")},
             reference={f"importance sampling at K = {ks[-1]}": estimators["importance_sampling"]["estimate"][-1]},
             zoom=("importance sampling (encoder q)", "IWAE bound"),
             ylabel="mean log p(x) estimate (nats)",
             title=f"estimators of log p(x) on the trained VAE, {estimators['num_images']} test images"),
         f"Left: the mean over {estimators['num_images']} test images of each estimate of log p(x) under the "
         "trained VAE, ± 2 standard errors; middle: the two good ones on their own scale; right: the standard "
         "errors. Naive Monte Carlo draws z from the "
         "prior, which rarely lands where p(z | x) is, so it is far too low and its reported standard error "
         "is unreliable until K is large; importance sampling from the encoder's q is close already at small K. "
         "The IWAE bound E[log (1/K) Σ_k w_k] is the expectation of the importance-sampled estimate (mean of "
         f"{estimators['iwae_replicates']} independent replicates per image), rises with K and stays below "
         "log p(x); at K = 1 it is the ELBO.")

    anomaly_rows, anomaly_captions = {}, {}
    for model in ("vae", "mob"):
        entries = anomalies[model]
        anomaly_rows[model] = binary.test[[entry["index"] for entry in entries]]
        anomaly_captions[model] = [f"{entry['nll']:.1f}" + (f" ({entry['label']})" if entry["label"] is not None
                                                             else "") for entry in entries]
    save("anomalies", plots.image_rows(anomaly_rows, shape, anomaly_captions,
                                       title="least likely test digits, with −log p(x)"),
         "The ten test digits of highest anomaly score −log p(x) (nats, under each image, with the digit's "
         "label in parentheses) under the VAE "
         "(importance-sampled) and under the mixture of Bernoullis (exact).")
    return captions


# --- The table and the report ------------------------------------------------------------

_LABELS = {"mob": "mob (EM)", "gmm": "gmm (EM)", "fa": "fa (EM)", "ae": "ae", "vae": "vae", "iwae": "iwae",
           "svi": "svi", SEMI_AMORTIZED: "semi-amortized vae"}
_SECTIONS = (
    ("binary", "binary digits: nats per test image of 64 binary pixels", BINARY_MODELS),
    ("dequantized", "dequantized digits: nats of density per test image in [0, 1)^64 — a different unit, "
                    "not comparable with the binary section", CONTINUOUS_MODELS),
)
_HEADER = ("model", "data", "train s", "test ELBO", "test NLL", "± se", "NLL by", "approx. gap", "amort. gap")


def _number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}"


def _label(model: str, metrics: dict) -> str:
    if model == "iwae":
        return f"iwae (K = {metrics['settings']['configs']['iwae']['num_samples']})"
    return _LABELS[model]


def _table_sections(metrics: dict) -> list[tuple[str, list[tuple[str, ...]]]]:
    sections = []
    for data, title, models in _SECTIONS:
        rows = []
        for model in models:
            entry = metrics["models"][model]
            seconds = _number(entry["train_seconds"], 1)
            if model == SEMI_AMORTIZED:
                seconds = f"{seconds} + {entry['refine_seconds']:.2f}"
            nll_by = entry["nll_method"] or f"none (reconstruction −log p(x|f(x)) = " \
                                            f"{entry['test_reconstruction_nll']:.2f})"
            rows.append((_label(model, metrics), data, seconds, _number(entry["test_elbo"]),
                         _number(entry["test_nll"]), _number(entry.get("test_nll_stderr"), 3), nll_by,
                         _number(entry.get("approximation_gap")), _number(entry.get("amortization_gap"))))
        sections.append((title, rows))
    return sections


def format_table(metrics: dict) -> str:
    """The tour's results as plain text: one row per model, in two sections (binary and dequantized data)."""
    lines = []
    for title, rows in _table_sections(metrics):
        widths = [max(len(row[column]) for row in (_HEADER, *rows)) for column in range(len(_HEADER))]
        lines.append(title)
        for row in (_HEADER, *rows):
            lines.append("  ".join(cell.ljust(width) if column in (0, 1, 6) else cell.rjust(width)
                                   for column, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip())
        lines.append("")
    lines.append("NLL = −log p(x) (lower is better); ELBO ≤ log p(x); gaps in nats: approximation = log p(x) − "
                 "ELBO(best q), amortization = ELBO(best q) − ELBO(encoder's q). train s includes compilation; "
                 "semi-amortized: the VAE's training + the refinement of the test φ_i.")
    return "\n".join(lines)


def _report_blocks(metrics: dict, captions: dict[str, str]) -> list[tuple]:
    """The report as blocks ("h", level, text), ("p", text), ("table", header, rows), ("figure", name, caption)."""
    tour, machine, settings, models = metrics["tour"], metrics["machine"], metrics["settings"], metrics["models"]
    estimators, imputation = metrics["estimators"], metrics["imputation"]
    blocks: list[tuple] = [
        ("h", 1, f"lvmjax tour on {tour['data']}{' (quick)' if tour['quick'] else ''}"),
        ("p", f"lvmjax {tour['lvmjax']}, {tour['date']}, seed {tour['seed']}. Every number below was computed in "
              f"this run: {tour['num_train']} training and {tour['num_test']} test images, one split for every "
              "model." + (" This is the quick tour: tiny budgets, so the numbers are a smoke test, not results."
                          if tour["quick"] else "")),
        ("p", f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
              f"{machine['os']}; Python {machine['python']}, jax {machine['jax']} on the {machine['backend']} "
              f"backend ({machine['num_devices']} × {machine['device']}). Load average (1, 5, 15 min) at the start "
              f"{machine['load_average_start']}, at the end {machine['load_average_end']}: other work on the "
              "machine inflates every time below."),
        ("h", 2, "Models on the test split"),
    ]
    for title, rows in _table_sections(metrics):
        blocks += [("p", title + "."), ("table", _HEADER, rows)]
    configs = settings["configs"]
    blocks += [
        ("p", "NLL = −log p(x), lower is better: exact for the classical models (for which the exact posterior "
              "is the q, so test ELBO = −test NLL), importance-sampled for the neural ones with K = "
              f"{settings['nll_samples']} draws from the refined q per test image, with its standard error. "
              "approx. gap = log p(x) − ELBO(q*) and amort. gap = ELBO(q*) − ELBO(q_φ(x)) (Cremer et al. 2018), "
              f"with q* the encoder's q refined by {settings['refine_steps']} Adam steps per test image; for svi, "
              f"whose φ_i are fitted by {2 * settings['refine_steps']} steps per test image, the whole gap "
              "log p(x) − ELBO is shown as the approximation gap. The semi-amortized VAE is the VAE with q*: its "
              f"ELBO closes the amortization gap of {_number(models[SEMI_AMORTIZED]['amortization_gap_closed'])} "
              f"nats; refining the {tour['num_test']} test φ_i took {models[SEMI_AMORTIZED]['refine_seconds']:.2f} "
              "s (run only). Training seconds include compilation. The binary and the dequantized NLLs are in "
              "different units: one is the probability of 64 binary pixels, the other the density of 64 "
              "real values in [0, 1) (its log minus 64 log 17 = "
              f"{64 * math.log(17):.1f} nats bounds the log-probability of the 17-level image from below), so a "
              "row of one section says nothing about a row of the other."),
        ("p", "Budgets: "
              + ", ".join(f"{model} {configs[model]['epochs']} epochs" for model in ("ae", "vae", "iwae", "svi"))
              + f" (batch {configs['vae']['batch_size']}, Adam {configs['vae']['lr']:g} cosine-decayed, MLP "
              f"{tuple(configs['vae']['hidden'])}, latent dimension {configs['vae']['latent_dim']}; iwae with "
              f"K = {configs['iwae']['num_samples']}, so that each of its epochs costs about "
              f"{configs['iwae']['num_samples']} VAE epochs, and with Adam {configs['iwae']['lr']:g} to make up "
              f"for its fewer epochs); EM for at most {settings['em_max_iter']} iterations: mob and gmm with "
              f"{configs['gmm']['components']} components ({configs['gmm']['covariance']} covariances), fa "
              f"with {configs['fa']['latent_dim']} factors. Iterations run: "
              + ", ".join(f"{model} {models[model]['iterations']}" for model in TOUR_MODELS) + "."),
        ("h", 2, "Estimating log p(x): naive Monte Carlo, importance sampling, the IWAE bound"),
        ("figure", "estimators", captions["estimators"]),
        ("table", ("K", "naive MC", "± se", "ESS", "importance sampling", "± se", "ESS", "IWAE bound", "± se"),
         [(str(k), _number(estimators["naive_mc"]["estimate"][i]), _number(estimators["naive_mc"]["stderr"][i], 3),
           _number(estimators["naive_mc"]["ess"][i], 1), _number(estimators["importance_sampling"]["estimate"][i]),
           _number(estimators["importance_sampling"]["stderr"][i], 3),
           _number(estimators["importance_sampling"]["ess"][i], 1), _number(estimators["iwae_bound"]["estimate"][i]),
           _number(estimators["iwae_bound"]["stderr"][i], 3))
          for i, k in enumerate(estimators["num_samples"])]),
        ("p", f"Means over the first {estimators['num_images']} test images; ESS = (Σ w)² / Σ w², the effective "
              "number of samples out of K. The same key serves every K, so a larger K extends the draws of a "
              "smaller one."),
        ("h", 2, "Generated digits"),
    ]
    blocks += [("figure", f"samples_{model}", captions[f"samples_{model}"])
               for model in ("mob", "gmm", "fa", "vae", "iwae", "svi")]
    blocks += [
        ("h", 2, "Reconstruction and interpolation"),
        ("figure", "reconstructions", captions["reconstructions"]),
        ("figure", "interpolations", captions["interpolations"]),
        ("h", 2, "Imputation: the upper half missing"),
        ("figure", "imputation_binary", captions["imputation_binary"]),
        ("figure", "imputation_dequantized", captions["imputation_dequantized"]),
        ("table", ("data", "model", "mean squared error on the missing pixels"),
         [("binary", model, _number(value, 4)) for model, value in imputation["binary_mse"].items()]
         + [("dequantized", model, _number(value, 4)) for model, value in imputation["dequantized_mse"].items()]),
        ("p", f"Over all {tour['num_test']} test images; 'training mean' imputes every missing pixel by its mean "
              "over the training images, the baseline a model has to beat. For the binary data the error of a "
              "probability against the 0/1 truth is the Brier score."),
        ("h", 2, "The latent space"),
        ("figure", "latent_space", captions["latent_space"]),
        ("h", 2, "Anomaly scores"),
        ("figure", "anomalies", captions["anomalies"]),
        ("table", ("rank", "vae: test image (label)", "−log p(x)", "mob: test image (label)", "−log p(x)"),
         [(str(rank + 1), f"{vae['index']} ({vae['label']})", _number(vae["nll"]),
           f"{mob['index']} ({mob['label']})", _number(mob["nll"]))
          for rank, (vae, mob) in enumerate(zip(metrics["anomalies"]["vae"], metrics["anomalies"]["mob"],
                                                strict=True))]),
        ("h", 2, "Training"),
        ("figure", "training_neural", captions["training_neural"]),
        ("figure", "training_em", captions["training_em"]),
        ("h", 2, "Wall-clock time of each stage"),
        ("table", ("stage", "seconds"), [(name, _number(seconds, 1)) for name, seconds in metrics["stages"].items()]
         + [("total (up to writing the report)", _number(metrics["total_seconds"], 1))]),
    ]
    return blocks


def _render_markdown(blocks: list[tuple]) -> str:
    lines = []
    for block in blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("| " + " | ".join("---" for _ in header) + " |")
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        elif block[0] == "figure":
            lines += [f"![{block[1]}]({FIGURES_DIR}/{block[1]}.png)", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
          "text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}"
          "img{max-width:100%}figcaption{font-size:.9em;color:#444}")


def _render_html(blocks: list[tuple], directory: Path) -> str:
    """One self-contained page: the figures are embedded as base64 PNG data URIs."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(blocks[0][2])}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>"]
    for block in blocks:
        if block[0] == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif block[0] == "table":
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block[2]]
            parts.append("</table>")
        elif block[0] == "figure":
            encoded = base64.b64encode((directory / FIGURES_DIR / f"{block[1]}.png").read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(block[1])}">'
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _jsonable(value: Any) -> Any:
    """Floats that JSON can hold (NaN and infinities become null), tuples as lists."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value

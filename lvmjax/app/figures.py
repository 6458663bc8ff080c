"""What a saved run can show: generated images, imputations, reconstructions and its latent space.

The functions behind `lvmjax sample`, `lvmjax impute` and `lvmjax plot`, and
the figures of `lvmjax tour`. Each takes a `runs.Run` (from `runs.load_run`)
and works for every model that can do the thing asked:

    generate      x ~ p(x; θ) by ancestral sampling,  z ~ p(z),  x ~ p(x | z)     all but ae
    impute        E[x_m | x_o; θ] for the missing entries m of x                   all but ae
    reconstruct   E[x | z = f(x)],  f(x) = E_q[z | x]                              ae, vae, iwae
    latent codes  E[z | x] (the encoder's mean; FA/PPCA: the exact posterior)      all but gmm, mob

and raises `runs.RunError` naming the model otherwise.
"""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import amortized, applications, plots, runs
from lvmjax import data as data_lib
from lvmjax.model import LatentVariableModel, sample
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

_CLASSICAL_MODELS = {"mob": bernoulli_mixture.model, "gmm": gaussian_mixture.model, "fa": linear_gaussian.model,
                     "ppca": linear_gaussian.model}
_BERNOULLI = ("mob", "vae", "iwae", "svi", "ae")  # binary data; E[x | z] is a pixel probability
_ENCODERS = ("ae", "vae", "iwae")


# --- Compiled pieces, shared by the tour ------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model", "num", "means"))
def ancestral(key, model: LatentVariableModel, params, num: int, means: bool):
    """`num` draws z ~ p(z), x ~ p(x | z) (`lvmjax.sample`); with `means`, E[x | z] of z ~ p(z) instead of x."""
    def one(key):
        if means:  # x is never drawn
            return model.likelihood(params, model.prior(params).sample(seed=key)).mean()
        return sample(key, model, params)[1]

    return jax.vmap(one)(jax.random.split(key, num))


@functools.partial(jax.jit, static_argnames=("vae",))
def reconstruct_all(vae, params, data):
    """E[x | z = f(x)] for every row of `data` (`amortized.reconstruct`)."""
    return jax.vmap(lambda x: amortized.reconstruct(vae, params, x))(data)


@functools.partial(jax.jit, static_argnames=("vae", "num_steps"))
def interpolate_all(vae, params, starts, ends, num_steps: int):
    """The decoded straight paths from each code f(start) to f(end) (`amortized.interpolate`)."""
    return jax.vmap(lambda start, end: amortized.interpolate(vae, params, start, end, num_steps))(starts, ends)


@functools.partial(jax.jit, static_argnames=("vae", "num_samples"))
def impute_vae_all(key, vae, params, data, observed, num_samples: int):
    """`applications.impute_vae` of every row of `data` (one mask), key fold_in(key, row)."""
    def one(args):
        index, x = args
        return applications.impute_vae(jax.random.fold_in(key, index), vae, params, x, observed, num_samples)[1]

    # A batch size that divides N: lax.map compiles no second body for a remainder.
    batch_size = max(size for size in range(1, 33) if data.shape[0] % size == 0)
    return jax.lax.map(one, (jnp.arange(data.shape[0]), data), batch_size=batch_size)


def principal_plane(points) -> tuple[np.ndarray, list[float]]:
    """Points (N, d) centred and projected on their first two principal axes (numpy SVD); and the
    fraction of the variance on each. Points of d = 2 are only centred, d = 1 gets a zero second axis."""
    points = np.asarray(points, np.float64)
    centred = points - points.mean(axis=0)
    if centred.shape[1] == 1:
        return np.column_stack([centred[:, 0], np.zeros(len(centred))]), [1.0, 0.0]
    _, singular_values, axes = np.linalg.svd(centred, full_matrices=False)
    variances = np.square(singular_values)
    ratio = variances[:2] / variances.sum() if variances.sum() > 0 else np.zeros(2)
    return centred @ axes[:2].T, [float(value) for value in ratio]


def one_per_label(labels, count: int = 10) -> np.ndarray:
    """Indices of the first image of each label 0, 1, ... (the first `count` images without labels)."""
    if labels is None:
        return np.arange(count)
    return np.array([int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)[:count]])


# --- Generation ------------------------------------------------------------------------------


def _generative(run: runs.Run) -> tuple[LatentVariableModel, object]:
    model = run.config.model
    if model == "ae":
        raise runs.RunError("ae is a deterministic autoencoder: it has no prior p(z), so it generates nothing "
                            "and defines no p(x); use a vae run.")
    if model in _CLASSICAL_MODELS:
        return _CLASSICAL_MODELS[model], runs.classical_params(run)
    return run.vae.model, {"decoder": run.params["decoder"]}


def generate(key, run: runs.Run, num: int, draw: bool = False) -> np.ndarray:
    """`num` generated datapoints, shape (num, D), by ancestral sampling z ~ p(z), x ~ p(x | z; θ).

    For the Bernoulli models (mob, vae, iwae, svi) the default is the pixel
    probabilities E[x | z] (what the seed text's figures show; each is one of
    the prototypes for the mixture); `draw=True` draws the binary x instead. The
    Gaussian models (gmm, fa, ppca) always draw x.
    """
    if num < 1:
        raise runs.RunError(f"the number of samples must be at least 1, got {num}.")
    lvm, params = _generative(run)
    means = run.config.model in _BERNOULLI and not draw
    return np.asarray(ancestral(key, lvm, params, num, means))


# --- Imputation ------------------------------------------------------------------------------


def impute(key, run: runs.Run, data, observed, num_samples: int = 1000) -> np.ndarray:
    """Every row of `data` (N, D) with its missing entries (where `observed` is False) replaced by
    E[x_m | x_o; θ]: a pixel probability for the Bernoulli models.

    Exact for mob, gmm, fa and ppca (`applications.impute_*`). For vae and iwae,
    self-normalized importance sampling with K = `num_samples` from the encoder
    (`applications.impute_vae`); svi has no encoder, so its proposal is the
    prior p(z), whose weights are the likelihoods p(x_o | z_k) alone.
    """
    model = run.config.model
    data = jnp.asarray(data)
    observed = jnp.asarray(observed, bool)
    if data.ndim != 2 or data.shape[1] != run.data_dim:
        raise runs.RunError(f"the data to impute must have shape (N, {run.data_dim}), got {data.shape}.")
    if model == "ae":
        _generative(run)  # raises: the autoencoder defines no p(x)
    if model in _CLASSICAL_MODELS:
        impute_one = {"mob": applications.impute_bernoulli_mixture, "gmm": applications.impute_gaussian_mixture,
                      "fa": applications.impute_linear_gaussian, "ppca": applications.impute_linear_gaussian}[model]
        params = runs.classical_params(run)
        return np.asarray(jax.jit(jax.vmap(lambda x: impute_one(params, x, observed)[1]))(data))
    vae, params = run.vae, run.params
    if model == "svi":
        vae = _prior_proposal(vae)
        params = {"decoder": run.params["decoder"]}
    return np.asarray(impute_vae_all(key, vae, params, data, observed, num_samples))


def _prior_proposal(vae: amortized.AmortizedModel) -> amortized.AmortizedModel:
    """The decoder of `vae` with p(z) = N(0, I) in place of its encoder, as the proposal of `impute_vae`."""
    standard_normal = {"mean": jnp.zeros(vae.latent_dim), "log_scale": jnp.zeros(vae.latent_dim)}
    return vae._replace(encoder_output=lambda params, x: standard_normal)


# --- Latent codes ----------------------------------------------------------------------------


def latent_codes(run: runs.Run, dataset: data_lib.Dataset) -> tuple[np.ndarray, np.ndarray | None, str]:
    """E[z | x] of the test split (for svi, the means of the φ_i of the training split), its labels,
    and what the codes are."""
    model = run.config.model
    if model in ("mob", "gmm"):
        raise runs.RunError(f"{model} has a discrete z (the component): it has no latent space to show.")
    if model in ("fa", "ppca"):
        params = runs.classical_params(run)
        codes = applications.latent_means(jax.jit(linear_gaussian.posterior), params, jnp.asarray(dataset.test))
        return np.asarray(codes), dataset.test_labels, "E[z | x], the exact posterior mean, of the test data"
    if model == "svi":
        return (np.asarray(run.params["phi"]["mean"]), dataset.train_labels,
                "the means of the per-datapoint q(z; φ_i) of the training data")
    codes = applications.latent_means(jax.jit(run.vae.encode), run.params, jnp.asarray(dataset.test))
    return np.asarray(codes), dataset.test_labels, "the encoder's means E_q[z | x] of the test data"


# --- The figures of a run ------------------------------------------------------------------


def read_history(run_dir: str | Path) -> list[dict]:
    """The training history of a run: one entry per epoch (or EM iteration), from metrics.jsonl."""
    path = Path(run_dir) / runs.METRICS_FILE
    try:
        history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise runs.RunError(f"cannot read {path} ({error}).") from None
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or "train_objective" not in entry:
            raise runs.RunError(f"{path} is damaged: line {number} has no train_objective.")
    return history


def _display(images: np.ndarray, model: str) -> np.ndarray:
    """Images clipped to [0, 1]: Gaussian samples and imputations leave it."""
    return np.clip(images, 0.0, 1.0) if model not in _BERNOULLI else images


def samples_figure(run: runs.Run, images: np.ndarray, draw: bool = False):
    model = run.config.model
    if model in _BERNOULLI:
        what = "binary draws x ~ p(x | z)" if draw else "pixel probabilities E[x | z]"
    else:
        what = "draws x ~ p(x | z), clipped to [0, 1]"
    return plots.image_mosaic(_display(images, model), run.image_shape,
                              title=f"{model}: {len(images)} generated images ({what}, z ~ p(z))")


def imputation_figure(run: runs.Run, truth, observed, imputed, mask: str, labels=None):
    """Up to ten of the imputed images (one per label where there are labels)."""
    chosen = one_per_label(labels, min(10, len(truth)))
    observed_rows = np.broadcast_to(observed, (len(chosen), len(observed)))
    model = run.config.model
    return plots.imputation_grid(truth[chosen], observed_rows, {model: _display(imputed[chosen], model)},
                                 run.image_shape, title=f"{model}: imputation, {mask} missing")


def plot_run(key, run: runs.Run, run_dir: str | Path, dataset: data_lib.Dataset, out_dir: Path,
             num_samples: int = 1000) -> dict[str, Path]:
    """Writes every figure that the run's model can make into `out_dir`; returns name -> path.

    training (the objective per epoch or EM iteration), samples, imputation of
    the top half (images only), reconstructions and interpolations (models with
    an encoder), components (mixtures: the component means by weight) and
    latent_space (E[z | x], on its two principal axes when d > 2).
    """
    model, shape = run.config.model, run.image_shape
    written: dict[str, Path] = {}

    def save(name, figure):
        path = out_dir / f"{name}.png"
        plots.save(figure, path)
        written[name] = path

    history = read_history(run_dir)
    unit = "EM iteration" if model in runs.CLASSICAL_MODELS else "epoch"
    objective = {"ae": "log p(x | f(x))", "iwae": f"IWAE bound, K = {run.config.samples}",
                 "mob": "log-likelihood + log p(θ) / N", "gmm": "log-likelihood", "fa": "log-likelihood",
                 "ppca": "log-likelihood"}.get(model, "ELBO")
    save("training", plots.curves({objective: [entry["train_objective"] for entry in history]}, unit,
                                  "training objective per datapoint (nats)", title=f"{model}: training"))
    key_samples, key_impute = jax.random.split(key)
    chosen = one_per_label(dataset.test_labels, min(10, len(dataset.test)))
    if model != "ae" and shape is not None:
        save("samples", samples_figure(run, generate(key_samples, run, 100)))
        observed = np.asarray(applications.top_half_missing(shape))
        truth = dataset.test[chosen]
        imputed = impute(key_impute, run, truth, observed, num_samples)
        labels = dataset.test_labels[chosen] if dataset.test_labels is not None else None
        save("imputation", imputation_figure(run, truth, observed, imputed, "top-half", labels))
    if model in _ENCODERS and shape is not None:
        originals = jnp.asarray(dataset.test[chosen])
        rows = {"test image": dataset.test[chosen], model: np.asarray(reconstruct_all(run.vae, run.params, originals))}
        save("reconstructions", plots.image_rows(rows, shape, title=f"{model}: reconstructions E[x | z = f(x)]"))
        if len(chosen) >= 2:
            pairs = min(3, len(chosen) // 2)
            paths = np.asarray(interpolate_all(run.vae, run.params, originals[0:2 * pairs:2],
                                               originals[1:2 * pairs:2], 10))
            save("interpolations", plots.image_rows({f"path {index + 1}": path for index, path in enumerate(paths)},
                                                    shape, title=f"{model}: decoded path between two codes"))
    if model in ("mob", "gmm") and shape is not None:
        params = runs.classical_params(run)
        weights = np.asarray(jax.nn.softmax(params.logits))
        order = np.argsort(-weights)
        means = np.asarray(jax.nn.sigmoid(params.probs_logits) if model == "mob" else params.means)[order]
        captions = [f"{100 * weights[index]:.1f}%" for index in order]
        save("components", plots.image_rows({"mean": _display(means, model)}, shape, {"mean": captions},
                                            title=f"{model}: component means, by weight π_k"))
    if model not in ("mob", "gmm"):
        codes, labels, what = latent_codes(run, dataset)
        plane, ratio = principal_plane(codes)
        title = f"{model}: {what}"
        if codes.shape[1] > 2:
            title += f" (d = {codes.shape[1]}, on its principal axes)"
        figure = plots.latent_scatter(plane if codes.shape[1] != 2 else codes, labels, title=_wrap(title))
        if codes.shape[1] > 2:
            figure.axes[0].set_xlabel(f"principal axis 1 ({100 * ratio[0]:.0f}% of the variance)")
            figure.axes[0].set_ylabel(f"principal axis 2 ({100 * ratio[1]:.0f}%)")
        save("latent_space", figure)
    return written


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width))


def squared_error(imputed, truth, observed) -> float:
    """The mean squared error over the missing entries."""
    missing = ~np.asarray(observed, bool)
    return float(np.mean(np.square(np.asarray(imputed)[:, missing] - np.asarray(truth)[:, missing])))


__all__ = ["ancestral", "generate", "impute", "impute_vae_all", "interpolate_all", "latent_codes",
           "one_per_label", "plot_run", "principal_plane", "read_history", "reconstruct_all",
           "squared_error"]

"""What a saved run can show: generated images, imputations, reconstructions and its latent space.

The functions behind `lvmjax sample`, `lvmjax impute` and `lvmjax plot`, and
the figures of `lvmjax tour`. Each takes a `Run` (from `rundir.load_run`) and
asks its model's spec whether it can do the thing asked:

    generate      x ~ p(x; θ) by ancestral sampling,  z ~ p(z),  x ~ p(x | z)     ModelSpec.generative
    impute        E[x_m | x_o; θ] for the missing entries m of x                   ModelSpec.impute
    reconstruct   E[x | z = f(x)],  f(x) = E_q[z | x]                              ModelSpec.encoder
    latent codes  E[z | x] (the encoder's mean; FA/PPCA: the exact posterior)      ModelSpec.latent_codes

and raises a `RunError` that says why otherwise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications, plots
from lvmjax import data as data_lib
from lvmjax.app.compiled import ancestral, interpolate_all, reconstruct_all
from lvmjax.app.rundir import read_history
from lvmjax.app.spec import Run
from lvmjax.errors import RunError

__all__ = [
    "generate",
    "imputation_figure",
    "impute",
    "latent_codes",
    "one_per_label",
    "plot_run",
    "principal_plane",
    "samples_figure",
    "squared_error",
]


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


def generate(key, run: Run, num: int, draw: bool = False) -> np.ndarray:
    """`num` generated datapoints, shape (num, D), by ancestral sampling z ~ p(z), x ~ p(x | z; θ).

    For the Bernoulli models (mob, vae, iwae, svi) the default is the pixel
    probabilities E[x | z] (what the seed text's figures show; each is one of
    the prototypes for the mixture); `draw=True` draws the binary x instead. The
    Gaussian models (gmm, fa, ppca) always draw x.
    """
    if num < 1:
        raise RunError(f"the number of samples must be at least 1, got {num}.")
    lvm, params = run.spec.require("generative")(run)
    means = run.spec.pixel_probabilities and not draw
    return np.asarray(ancestral(key, lvm, params, num, means))


# --- Imputation ------------------------------------------------------------------------------


def impute(key, run: Run, data, observed, num_samples: int = 1000, method: str = "is") -> np.ndarray:
    """Every row of `data` (N, D) with its missing entries (where `observed` is False) replaced by
    E[x_m | x_o; θ]: a pixel probability for the Bernoulli models.

    Exact for mob, gmm, fa and ppca (`applications.impute_*`). For vae and iwae,
    self-normalized importance sampling with K = `num_samples` from the encoder
    (`applications.impute_vae`); svi has no encoder, so its proposal is the
    prior p(z), whose weights are the likelihoods p(x_o | z_k) alone. With `method="mcmc"`
    (vae, iwae, svi), z is drawn from p(z | x_o) by NUTS instead (`ModelSpec.impute_by_mcmc`).
    """
    data = jnp.asarray(data)
    observed = jnp.asarray(observed, bool)
    if data.ndim != 2 or data.shape[1] != run.data_dim:
        raise RunError(f"the data to impute must have shape (N, {run.data_dim}), got {data.shape}.")
    capability = "impute_by_mcmc" if method == "mcmc" else "impute"
    return run.spec.require(capability)(key, run, data, observed, num_samples)


# --- Latent codes ----------------------------------------------------------------------------


def latent_codes(run: Run, dataset: data_lib.Dataset) -> tuple[np.ndarray, np.ndarray | None, str]:
    """E[z | x] of the test split (for svi, the means of the φ_i of the training split), its labels,
    and what the codes are."""
    return run.spec.require("latent_codes")(run, dataset)


# --- The figures of a run ------------------------------------------------------------------


def _display(images: np.ndarray, run: Run) -> np.ndarray:
    """Images clipped to [0, 1]: Gaussian samples and imputations leave it."""
    return images if run.spec.pixel_probabilities else np.clip(images, 0.0, 1.0)


def _image_shape(run: Run) -> tuple[int, int]:
    if run.image_shape is None:
        raise RunError(f"the data of this {run.spec.name} run are not images; there is nothing to draw.")
    return run.image_shape


def samples_figure(run: Run, images: np.ndarray, draw: bool = False):
    if run.spec.pixel_probabilities:
        what = "binary draws x ~ p(x | z)" if draw else "pixel probabilities E[x | z]"
    else:
        what = "draws x ~ p(x | z), clipped to [0, 1]"
    return plots.image_mosaic(
        _display(images, run),
        _image_shape(run),
        title=f"{run.spec.name}: {len(images)} generated images ({what}, z ~ p(z))",
    )


def imputation_figure(run: Run, truth, observed, imputed, mask: str, labels=None):
    """Up to ten of the imputed images (one per label where there are labels)."""
    chosen = one_per_label(labels, min(10, len(truth)))
    observed_rows = np.broadcast_to(observed, (len(chosen), len(observed)))
    name = run.spec.name
    return plots.imputation_grid(
        truth[chosen],
        observed_rows,
        {name: _display(imputed[chosen], run)},
        _image_shape(run),
        title=f"{name}: imputation, {mask} missing",
    )


def plot_run(
    key, run: Run, run_dir: str | Path, dataset: data_lib.Dataset, out_dir: Path, num_samples: int = 1000
) -> dict[str, Path]:
    """Writes every figure that the run's model can make into `out_dir`; returns name -> path.

    training (the objective per epoch or EM iteration), samples and imputation of the
    top half (images of models with a p(x)), reconstructions and interpolations
    (models with an encoder), components (mixtures: the component means by weight)
    latent_space (E[z | x], on its two principal axes when d > 2; models with a
    continuous z), and the figures of the model's own (`ModelSpec.figures`: the HMM's segmentation).
    """
    spec, shape = run.spec, run.image_shape
    written: dict[str, Path] = {}

    def save(name, figure):
        path = out_dir / f"{name}.png"
        plots.save(figure, path)
        written[name] = path

    history = read_history(run_dir)
    save(
        "training",
        plots.curves(
            {spec.objective(run.config): [entry["train_objective"] for entry in history]},
            spec.history_unit,
            "training objective per datapoint (nats)",
            title=f"{spec.name}: training",
        ),
    )
    key_samples, key_impute = jax.random.split(key)
    chosen = one_per_label(dataset.test_labels, min(10, dataset.test.shape[0]))
    if spec.generative is not None and shape is not None:
        save("samples", samples_figure(run, generate(key_samples, run, 100)))
    if spec.impute is not None and shape is not None:
        observed = np.asarray(applications.top_half_missing(shape))
        truth = dataset.test[chosen]
        imputed = impute(key_impute, run, truth, observed, num_samples)
        labels = dataset.test_labels[chosen] if dataset.test_labels is not None else None
        save("imputation", imputation_figure(run, truth, observed, imputed, "top-half", labels))
    if spec.encoder and shape is not None:
        originals = jnp.asarray(dataset.test[chosen])
        rows = {
            "test image": dataset.test[chosen],
            spec.name: np.asarray(reconstruct_all(run.vae, run.params, originals)),
        }
        save("reconstructions", plots.image_rows(rows, shape, title=f"{spec.name}: reconstructions E[x | z = f(x)]"))
        if len(chosen) >= 2:
            pairs = min(3, len(chosen) // 2)
            paths = np.asarray(
                interpolate_all(run.vae, run.params, originals[0 : 2 * pairs : 2], originals[1 : 2 * pairs : 2], 10)
            )
            save(
                "interpolations",
                plots.image_rows(
                    {f"path {index + 1}": path for index, path in enumerate(paths)},
                    shape,
                    title=f"{spec.name}: decoded path between two codes",
                ),
            )
    if spec.component_means is not None and shape is not None:
        weights, means = spec.component_means(run)
        order = np.argsort(-weights)
        captions = [f"{100 * weights[index]:.1f}%" for index in order]
        save(
            "components",
            plots.image_rows(
                {"mean": _display(means[order], run)},
                shape,
                {"mean": captions},
                title=f"{spec.name}: component means, by weight π_k",
            ),
        )
    if spec.figures is not None:
        for name, figure in spec.figures(run, dataset).items():
            save(name, figure)
    if spec.latent_codes is not None:
        codes, labels, what = latent_codes(run, dataset)
        plane, ratio = principal_plane(codes)
        title = f"{spec.name}: {what}"
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

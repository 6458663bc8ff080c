"""The tour's figures and their captions: what the fitted models generate, reconstruct, impute and score.

Each model's images come from its spec's capabilities, as for `lvmjax sample` and
`lvmjax plot`: `app.figures.generate` draws pixel probabilities E[x | z] for a model of
binary data and samples x (clipped to [0, 1] for display) for a Gaussian one.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import app, plots
from lvmjax.app import figures as app_figures
from lvmjax.app.compiled import interpolate_all, reconstruct_all
from lvmjax.data import Dataset
from lvmjax.tour.experiments import (
    ANOMALIES,
    BY_EM,
    DATA_NAMES,
    IMPUTED,
    LATENT,
    OVER_EPOCHS,
    SEQUENCE_MODEL,
    TOPIC_MODELS,
    Advance,
    by_data,
    image_shape,
)

__all__ = ["FIGURES", "FIGURES_DIR", "GENERATED", "NUM_GENERATED", "RECONSTRUCTED", "draw_figures"]

FIGURES_DIR = "figures"
NUM_GENERATED = 100
GENERATED = ("mob", "gmm", "fa", "vae", "iwae", "svi")  # the models whose samples are shown, in this order
RECONSTRUCTED = ("ae", "vae")  # the models whose reconstructions and interpolations are shown
FIGURES = (
    "samples_mob",
    "samples_gmm",
    "samples_fa",
    "samples_vae",
    "samples_iwae",
    "samples_svi",
    "reconstructions",
    "interpolations",
    "imputation_binary",
    "imputation_dequantized",
    "latent_space",
    "training_neural",
    "training_em",
    "estimators",
    "anomalies",
    "segmentation_hmm",
    "topics_lda",
    "document_topics_lda",
    "posterior_nuts",
)

_DECODER_SAMPLES = "Bernoulli means E[x | z] (pixel probabilities) of z ~ N(0, I) through the decoder"
_SAMPLES = {
    "mob": "Bernoulli means E[x | z] of z ~ p(z): each is one of the mixture's prototypes, so at most "
    "{components} distinct images appear",
    "gmm": "samples x ~ p(x | z), z ~ p(z), of dequantized pixels, clipped to [0, 1] for display",
    "fa": "samples x ~ p(x | z) = N(W z + b, Ψ), z ~ N(0, I), of dequantized pixels, clipped to [0, 1] for display",
    "vae": _DECODER_SAMPLES,
    "iwae": _DECODER_SAMPLES,
    "svi": _DECODER_SAMPLES,
}
_IMPUTATIONS = {
    "binary": "Imputation of the missing upper half (red) of binary test digits: p(x_d = 1 | x_o) for every "
    "missing pixel, exact under the mixture of Bernoullis, importance-weighted under the VAE "
    "(`applications.impute_vae`, K = {vae_num_samples}).",
    "dequantized": "Imputation of the missing upper half of the same test digits, dequantized: the exact "
    "conditional mean E[x_m | x_o] under the Gaussian mixture and under factor analysis (clipped "
    "to [0, 1] for display).",
}


def _display(images, run: app.Run) -> np.ndarray:
    """Images clipped to [0, 1] unless they are pixel probabilities (Gaussian samples and imputations leave it)."""
    images = np.asarray(images)
    return images if run.spec.pixel_probabilities else np.clip(images, 0, 1)


def draw_figures(
    directory: Path,
    runs: dict[str, app.Run],
    fits: dict[str, app.FitResult],
    datasets: dict[str, Dataset],
    estimators: dict,
    imputation: dict,
    latent: dict,
    anomalies: dict[str, list[dict]],
    seed: int,
    advance: Advance,
    gold: dict,
) -> dict[str, str]:
    """Draws and saves every figure of `FIGURES` into `directory`; returns name -> caption."""
    shown = datasets[LATENT]  # the VAE's test digits: one of each label is reconstructed, interpolated, imputed
    shape = image_shape(shown)
    key = jax.random.fold_in(jax.random.key(seed), 3)
    captions: dict[str, str] = {}

    def save(name, figure, caption):
        plots.save(figure, directory / f"{name}.png")
        captions[name] = caption
        advance(len(captions), name)

    for index, name in enumerate(GENERATED):
        run = runs[name]
        images = app_figures.generate(jax.random.fold_in(key, index), run, NUM_GENERATED)
        description = _SAMPLES[name].format(components=run.config.components)
        title = f"{name}: {NUM_GENERATED} generated digits"
        save(
            f"samples_{name}",
            plots.image_mosaic(np.clip(images, 0, 1), shape, title=title),
            f"{name}: {NUM_GENERATED} generated images by ancestral sampling; {description}.",
        )

    labels = shown.test_labels
    chosen = app_figures.one_per_label(labels)
    originals = jnp.asarray(shown.test[chosen])
    rows = {"test image": originals}
    for name in RECONSTRUCTED:
        run = runs[name]
        run.spec.require("encoder")
        rows[name] = reconstruct_all(run.vae, run.params, originals)
    save(
        "reconstructions",
        plots.image_rows({label: np.asarray(images) for label, images in rows.items()}, shape, title="reconstructions"),
        "One test image of each digit and its reconstructions E[x | z = f(x)], with f(x) the encoder's mean: "
        "the deterministic autoencoder (reconstruction only) and the VAE (ELBO).",
    )

    pairs = [(0, 1), (2, 3), (4, 5)] if len(chosen) >= 6 else [(0, 1)]
    starts = originals[np.array([pair[0] for pair in pairs])]
    ends = originals[np.array([pair[1] for pair in pairs])]
    paths = {
        name: np.asarray(interpolate_all(runs[name].vae, runs[name].params, starts, ends, 10)) for name in RECONSTRUCTED
    }
    interpolation_rows = {}
    for index, (first, second) in enumerate(pairs):
        ends_named = (labels[chosen[first]], labels[chosen[second]]) if labels is not None else (first, second)
        for name in RECONSTRUCTED:
            interpolation_rows[f"{name} {ends_named[0]}→{ends_named[1]}"] = paths[name][index]
    save(
        "interpolations",
        plots.image_rows(interpolation_rows, shape, title="interpolation between the codes of two digits"),
        "Decoded means E[x | z] along the straight line from the code of one test digit to the code of "
        "another (`amortized.interpolate`), for the autoencoder and the VAE. The VAE's KL term keeps its "
        "codes where the prior puts mass, so the path between two codes decodes to digits too.",
    )

    observed = np.broadcast_to(imputation["observed"], (len(chosen), imputation["observed"].shape[0]))
    imputed = imputation["imputed"]
    for data, names in by_data(IMPUTED).items():
        save(
            f"imputation_{data}",
            plots.imputation_grid(
                datasets[names[0]].test[chosen],
                observed,
                {name: _display(imputed[name][chosen], runs[name]) for name in names},
                shape,
                title=f"{data} digits, upper half missing",
            ),
            _IMPUTATIONS[data].format(**imputation["metrics"]),
        )

    figure = plots.latent_scatter(
        latent["embedding"], latent["labels"], title="VAE codes of the test digits (PCA to 2-D)"
    )
    figure.axes[0].set_xlabel("principal axis 1 of E_q[z | x]")
    figure.axes[0].set_ylabel("principal axis 2 of E_q[z | x]")
    ratio = latent["metrics"]["explained_variance_ratio"]
    save(
        "latent_space",
        figure,
        f"The VAE encoder's means E_q[z | x] of the {len(datasets[LATENT].test)} test digits "
        f"({latent['metrics']['latent_dim']}-dimensional), projected to 2-D by PCA (numpy SVD of the centred means; "
        f"the two axes hold {100 * ratio[0]:.0f}% and {100 * ratio[1]:.0f}% of their variance), coloured by digit "
        "label.",
    )

    def history(name):
        return [entry["train_objective"] for entry in fits[name].history]

    def objective(name):  # a model without an encoder fits one φ_i per training datapoint
        spec = runs[name].spec
        return f"{name}: {spec.objective(runs[name].config)}" + ("" if spec.encoder else " (per-datapoint φ_i)")

    save(
        "training_neural",
        plots.curves(
            {objective(name): history(name) for name in OVER_EPOCHS},
            "epoch",
            "training objective per image (nats)",
            title="training, binary digits",
        ),
        "Training objective per epoch (mean over the epoch's minibatches) of the neural models on the binary "
        "digits. The autoencoder's objective is a reconstruction log-likelihood, not a bound on log p(x).",
    )
    save(
        "training_em",
        plots.curves(
            {f"{name} ({DATA_NAMES[runs[name].spec.data_kind]})": history(name) for name in BY_EM},
            "EM iteration",
            "mean training log-likelihood (nats)",
            title="EM",
        ),
        "EM's objective at each iterate: the mean training log-likelihood; for the mixture of Bernoullis, "
        "fitted by MAP-EM, plus log p(θ) / N of its Beta prior. The binary and dequantized models are in "
        "different units.",
    )

    ks = estimators["num_samples"]

    def series(estimator):
        entry = estimators[estimator]
        return entry["estimate"], [math.nan if value is None else value for value in entry["stderr"]]

    save(
        "estimators",
        plots.estimates_versus_samples(
            ks,
            {
                "naive MC (prior proposal)": series("naive_mc"),
                "importance sampling (encoder q)": series("importance_sampling"),
                "IWAE bound": series("iwae_bound"),
            },
            reference={f"importance sampling at K = {ks[-1]}": estimators["importance_sampling"]["estimate"][-1]},
            zoom=("importance sampling (encoder q)", "IWAE bound"),
            ylabel="mean log p(x) estimate (nats)",
            title=f"estimators of log p(x) on the trained VAE, {estimators['num_images']} test images",
        ),
        f"Left: the mean over {estimators['num_images']} test images of each estimate of log p(x) under the "
        "trained VAE, ± 2 standard errors; middle: the two good ones on their own scale; right: the standard "
        "errors. Naive Monte Carlo draws z from the "
        "prior, which rarely lands where p(z | x) is, so it is far too low and its reported standard error "
        "is unreliable until K is large; importance sampling from the encoder's q is close already at small K. "
        "The IWAE bound E[log (1/K) Σ_k w_k] is the expectation of the importance-sampled estimate (mean of "
        f"{estimators['iwae_replicates']} independent replicates per image), rises with K and stays below "
        "log p(x); at K = 1 it is the ELBO.",
    )

    anomaly_rows, anomaly_captions = {}, {}
    for name in ANOMALIES:
        entries = anomalies[name]
        anomaly_rows[name] = datasets[name].test[[entry["index"] for entry in entries]]
        anomaly_captions[name] = [
            f"{entry['nll']:.1f}" + (f" ({entry['label']})" if entry["label"] is not None else "") for entry in entries
        ]
    save(
        "anomalies",
        plots.image_rows(anomaly_rows, shape, anomaly_captions, title="least likely test digits, with −log p(x)"),
        "The ten test digits of highest anomaly score −log p(x) (nats, under each image, with the digit's "
        "label in parentheses) under the VAE "
        "(importance-sampled) and under the mixture of Bernoullis (exact).",
    )

    run = runs[SEQUENCE_MODEL]
    save(
        "segmentation_hmm",
        run.spec.require("figures")(run, datasets[SEQUENCE_MODEL])["segmentation"],
        f"The Nile's annual flow (10^8 m^3), 1871 (step 0) to 1970, each year coloured by its state on the "
        f"Viterbi path of the {run.config.states}-state HMM (fitted to the first "
        f"{len(datasets[SEQUENCE_MODEL].train)} years); beneath, the smoothed p(z_t | x_1:T) of every year. "
        "The years after the dashed line are the test split.",
    )

    lda_run = runs[TOPIC_MODELS[0]]
    corpus = datasets[TOPIC_MODELS[0]]
    topic_figures = lda_run.spec.require("figures")(lda_run, corpus)
    save(
        "topics_lda",
        topic_figures["topics"],
        f"The ten most probable words of each of the {lda_run.config.topics} topics that LDA (batch coordinate "
        f"ascent) found in {corpus.train.shape[0]} docstrings of SciPy, with p(w | topic) as bars; each topic's "
        "NPMI coherence over the test documents is in its title (1: its words only occur together).",
    )
    save(
        "document_topics_lda",
        topic_figures["document_topics"],
        "The topic proportions E[θ_d] of one test docstring of each SciPy subpackage (its name, and its row in "
        "the test split): a subpackage's documents draw on a few topics.",
    )

    nuts, encoder = gold["nuts_samples"], gold["encoder_samples"]  # (images, chains, draws, d), (images, draws, d)
    figure = plots.sample_clouds(
        {
            "NUTS draws of p(z | x)": [images.reshape(-1, images.shape[-1]) for images in nuts],
            "encoder's q(z | x)": list(encoder),
        },
        [f"test image {index}" for index in range(nuts.shape[0])],
        title="posterior of test digits under the VAE",
    )
    metrics = gold["metrics"]["nuts"]
    save(
        "posterior_nuts",
        figure,
        f"The posterior p(z | x) of {nuts.shape[0]} test digits under the trained VAE: NUTS draws (4 chains, "
        f"largest R-hat {metrics['max_rhat']:.3f}, smallest ESS {metrics['min_ess']:.0f}) against draws of the "
        "encoder's q(z | x), projected on the two widest directions of the NUTS draws. Where the clouds "
        "differ, the encoder's Gaussian q misses the posterior.",
    )
    return captions

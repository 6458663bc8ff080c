"""Draws the README's figures of the classical models and their applications.

    python tools/application_figures.py [--mnist-dir ../shared/data] [--out docs/figures]

- imputation_digits.png: the seed text's example, digits whose upper half is
  missing, completed by the mixture of Bernoullis (exact) and a VAE (importance
  weighting), and on the dequantized digits by the Gaussian mixture and factor
  analysis (exact conditionals).
- imputation_mnist.png: the same on binarized MNIST (with --mnist-dir).
- model_selection_digits.png: BIC and held-out log-likelihood of
  full-covariance Gaussian mixtures with K = 1 … 10 on the dequantized digits.
- em_vs_vi.png: EM and variational EM on the same data from the same start.

Every number it prints is measured in the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import app, applications, mixture_vi, plots
from lvmjax.data import load_binarized_mnist, load_digits
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

NUM_SHOWN = 10


def impute_all(impute, params, images, mask):
    return np.asarray(jax.jit(jax.vmap(lambda x: impute(params, x, mask)[1]))(jnp.asarray(images)))


def impute_vae(fitted, images, mask, num_samples=1000, fill_value=0.5):
    vae, params = fitted

    def one(key, x):
        return applications.impute_vae(key, vae, params, x, mask, num_samples, fill_value)[1]

    keys = jax.random.split(jax.random.PRNGKey(1), len(images))
    return np.asarray(jax.jit(jax.vmap(one))(keys, jnp.asarray(images)))


def fit_vae(config):
    """(the AmortizedModel, its trained parameters)."""
    result = app.fit(config)
    print(
        f"  vae on {config.data}: {config.epochs} epochs in {result.seconds:.0f} s, "
        f"final training ELBO {result.history[-1]['train_objective']:.2f}"
    )
    return config.spec.networks(config, result.data_dim, result.image_shape), result.params


def one_per_label(labels, count=NUM_SHOWN):
    return np.array([np.flatnonzero(labels == label)[0] for label in range(count)])


def digits_figures(out: Path) -> None:
    binary, continuous = load_digits(), load_digits(continuous=True)
    mask = applications.top_half_missing((8, 8))
    shown = one_per_label(binary.test_labels)
    key = jax.random.PRNGKey(0)

    mob, _ = bernoulli_mixture.fit_em(key, jnp.asarray(binary.train), 10, n_init=4)
    vae = fit_vae(app.FitConfig(model="vae", data="digits", epochs=300))
    imputations = {
        "mixture of\nBernoullis": impute_all(applications.impute_bernoulli_mixture, mob, binary.test[shown], mask),
        "VAE": impute_vae(vae, binary.test[shown], mask),
    }
    masks = np.broadcast_to(np.asarray(mask), binary.test[shown].shape)
    figure = plots.imputation_grid(
        binary.test[shown],
        masks,
        imputations,
        (8, 8),
        title="Binary digits, upper half missing: p(x_missing = 1 | x_observed)",
    )
    plots.save(figure, out / "imputation_digits.png")

    gmm, _ = gaussian_mixture.fit_em(key, jnp.asarray(continuous.train), 10, "full", n_init=4, reg_covar=1e-3)
    fa, _ = linear_gaussian.fit_factor_analysis(key, jnp.asarray(continuous.train), 16)
    imputations = {
        "Gaussian\nmixture": impute_all(applications.impute_gaussian_mixture, gmm, continuous.test[shown], mask),
        "factor\nanalysis": impute_all(applications.impute_linear_gaussian, fa, continuous.test[shown], mask),
    }
    figure = plots.imputation_grid(
        continuous.test[shown],
        masks,
        imputations,
        (8, 8),
        title="Dequantized digits, upper half missing: E[x_missing | x_observed]",
    )
    plots.save(figure, out / "imputation_digits_continuous.png")
    for name, images in imputations.items():
        error = np.mean((images[:, ~np.asarray(mask)] - continuous.test[shown][:, ~np.asarray(mask)]) ** 2)
        print(f"  {name.replace(chr(10), ' ')}: mean squared error of the imputed pixels {error:.4f}")

    candidates = list(range(1, 11))
    selection = applications.select_gaussian_mixture(
        key, continuous.train, continuous.test, candidates, covariance_type="full", n_init=2
    )
    figure = plots.curves(
        {"BIC / N_train": np.asarray(selection.bic) / len(continuous.train)},
        "K",
        "BIC per datapoint (lower is better)",
        title=f"Full-covariance mixtures, dequantized digits\nBIC picks K = "
        f"{int(selection.num_components_by_bic)}, the held-out likelihood K = "
        f"{int(selection.num_components_by_test)}",
        x={"BIC / N_train": candidates},
    )
    axis = figure.axes[0]
    twin = axis.twinx()
    twin.plot(candidates, np.asarray(selection.test_log_likelihood), color="tab:orange", label="held-out")
    twin.set_ylabel("held-out log-likelihood per datapoint", color="tab:orange")
    plots.save(figure, out / "model_selection_digits.png")
    print(
        f"  model selection: BIC picks K = {int(selection.num_components_by_bic)}, held-out "
        f"log-likelihood K = {int(selection.num_components_by_test)}"
    )


def em_vs_vi_figure(out: Path) -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 1.0], [0.5, 3.5]])
    data = jnp.asarray(centres[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2)) * 0.8, jnp.float32)
    key = jax.random.PRNGKey(2)
    _, exact_info = mixture_vi.fit_vi(key, data, 3, "exact", num_steps=400)
    _, score_info = mixture_vi.fit_vi(key, data, 3, "score", num_steps=400, init_params=exact_info.initial_params)
    _, em_info = gaussian_mixture.fit_em(key, data, 3, max_iter=400, tol=0.0, init_params=exact_info.initial_params)
    steps = np.arange(400)
    figure = plots.curves(
        {
            "EM (log-likelihood)": np.asarray(em_info.objective),
            "VI, exact ELBO": np.asarray(exact_info.elbo),
            "VI, score-function ELBO (estimate)": np.asarray(score_info.elbo),
        },
        "iteration / gradient step",
        "mean per datapoint (nats)",
        title="EM and variational EM from the same θ₀",
        x={name: steps + 1 for name in ("EM (log-likelihood)", "VI, exact ELBO", "VI, score-function ELBO (estimate)")},
        log_x=True,
    )
    plots.save(figure, out / "em_vs_vi.png")
    print(
        f"  EM log-likelihood {float(em_info.objective[-1]):.4f}, VI exact ELBO {float(exact_info.elbo[-1]):.4f}, "
        f"VI score ELBO {float(score_info.elbo[-1]):.4f}"
    )


def mnist_figure(out: Path, mnist_dir: str) -> None:
    mnist = load_binarized_mnist(mnist_dir)
    mask = applications.top_half_missing((28, 28))
    shown = np.sort(np.random.default_rng(0).choice(len(mnist.test), NUM_SHOWN, replace=False))
    start = time.perf_counter()
    mob, info = bernoulli_mixture.fit_em(jax.random.PRNGKey(0), jnp.asarray(mnist.train), 50, max_iter=100)
    print(
        f"  mixture of 50 Bernoullis on MNIST: {int(info.num_iterations)} EM iterations in "
        f"{time.perf_counter() - start:.0f} s"
    )
    vae = fit_vae(
        app.FitConfig(
            model="vae", data="binarized-mnist", data_dir=mnist_dir, epochs=20, latent_dim=32, hidden=(512, 512)
        )
    )
    imputations = {
        "mixture of\nBernoullis": impute_all(applications.impute_bernoulli_mixture, mob, mnist.test[shown], mask),
        "VAE": impute_vae(vae, mnist.test[shown], mask, num_samples=5000, fill_value=0.0),
    }
    masks = np.broadcast_to(np.asarray(mask), mnist.test[shown].shape)
    figure = plots.imputation_grid(
        mnist.test[shown],
        masks,
        imputations,
        (28, 28),
        cell_inches=0.9,
        title="Binarized MNIST, upper half missing: p(x_missing = 1 | x_observed)",
    )
    plots.save(figure, out / "imputation_mnist.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--mnist-dir", default=None, help="directory holding binarized_mnist.npz")
    args = parser.parse_args()
    out = Path(args.out)
    print("digits:")
    digits_figures(out)
    print("EM and VI:")
    em_vs_vi_figure(out)
    if args.mnist_dir:
        print("binarized MNIST:")
        mnist_figure(out, args.mnist_dir)


if __name__ == "__main__":
    main()

"""Variational Bayesian Gaussian mixtures: lvmjax's `bayesian_mixture.fit_vb` against scikit-learn's
`BayesianGaussianMixture`, side by side.

    python -m benchmarks.bgmm [--quick] [--json FILE]

Both sides fit the same training data with the same K, covariance type, weight prior, default
priors (scikit-learn's), reg_covar, restarts and number of iterations (tolerance 0, so that both
do exactly `max_iter` coordinate-ascent iterations per restart), both in float32. Each row gives
the seconds (median of repeats; lvmjax after compilation, whose time is shown apart) and the
held-out log-likelihood per point of each side's posterior and its exact ELBO per training point,
both computed by the same functions (`bayesian_mixture.log_predictive`, the posterior predictive, a
mixture of Student-t's, and `bayesian_mixture.e_step`):

    bgmm_full     N = 100,000 synthetic points in D = 32 from 16 Gaussians, K = 16, full, dirichlet-process,
                  100 iterations from the same start: lvmjax's k-means++ hard assignments, given to
                  both sides as the responsibilities of the first update (so neither time holds an
                  initialization)
    bgmm_digits   scikit-learn's digits (constant pixels dropped, standardized), K = 10, full, 4 restarts of
                  200 iterations, each side from its own initialization (lvmjax: k-means++ hard
                  assignments; scikit-learn: its default, k-means), which both times include
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Row, machine, not_installed, print_rows, timed
from benchmarks.gmm_em import make_data
from lvmjax.models import bayesian_mixture, gaussian_mixture

SKLEARN_WEIGHT_PRIORS = {"dirichlet-process": "dirichlet_process", "dirichlet": "dirichlet_distribution"}


def predictive_from_sklearn(estimator, dtype=jnp.float32) -> bayesian_mixture.Posterior:
    """The `Posterior` of a fitted scikit-learn `BayesianGaussianMixture`: its `weight_concentration_`
    ((a_k, b_k) stacked to (2, K) for the Dirichlet process), `means_`, `mean_precision_`,
    `degrees_of_freedom_` and `covariances_` (E[Λ_k]⁻¹), in `dtype`."""
    concentration = estimator.weight_concentration_
    if isinstance(concentration, tuple):
        concentration = np.stack(concentration)
    fields = (
        concentration,
        estimator.means_,
        estimator.mean_precision_,
        estimator.degrees_of_freedom_,
        estimator.covariances_,
    )
    return bayesian_mixture.Posterior(*(jnp.asarray(np.asarray(field), dtype) for field in fields))


def initialize_from(estimator, responsibilities: np.ndarray, data: np.ndarray, random_state, xp=None) -> None:
    """In place of a `BayesianGaussianMixture`'s `_initialize_parameters`: its first update from the given
    responsibilities (N, K)."""
    estimator._initialize(data, responsibilities)


def kmeans_plus_plus_assignments(key: jax.Array, data: np.ndarray, num_components: int) -> np.ndarray:
    """Responsibilities (N, K) of the hard assignment of every datapoint to its nearest k-means++ centre: the
    start of each of lvmjax's restarts."""
    centres = np.asarray(gaussian_mixture.kmeans_plus_plus(key, jnp.asarray(data), num_components))
    distances = (data**2).sum(1)[:, None] - 2 * data @ centres.T + (centres**2).sum(1)
    return np.eye(num_components, dtype=data.dtype)[np.argmin(distances, axis=1)]


@jax.jit
def held_out_log_likelihood(posterior: bayesian_mixture.Posterior, test: jax.Array) -> jax.Array:
    """(1/M) Σ_m log p(x_m | training data) over the M test points, by the posterior predictive."""
    return jnp.mean(jax.vmap(bayesian_mixture.log_predictive, (None, 0))(posterior, test))


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 x 8 digits (1797 x 64) split 80/20 at random, the pixels constant on the training
    part dropped and the rest standardized by the training part's mean and deviation, float32."""
    from sklearn.datasets import load_digits

    data = load_digits().data
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(0.8 * len(order))
    train, test = data[order[:cut]], data[order[cut:]]
    deviations = train.std(axis=0)
    keep = deviations > 0
    mean = train.mean(axis=0)

    def standardize(part):
        return ((part[:, keep] - mean[keep]) / deviations[keep]).astype(np.float32)

    return standardize(train), standardize(test)


def compare(
    name: str,
    description: str,
    train: np.ndarray,
    test: np.ndarray,
    components: int,
    covariance: str = "full",
    weight_prior: str = "dirichlet-process",
    iterations: int = 100,
    n_init: int = 1,
    repeats: int = 3,
    peer_repeats: int = 1,
    same_start: bool = False,
) -> Row:
    """One `Row`: `fit_vb` and `BayesianGaussianMixture` for exactly `iterations` iterations per restart, from
    the same responsibilities (`same_start`: lvmjax's k-means++ hard assignments) or each from its own."""
    device_train, device_test = jnp.asarray(train), jnp.asarray(test)
    key = jax.random.key(0)
    start = kmeans_plus_plus_assignments(key, train, components) if same_start else None
    result = {}

    def fit():
        posterior, info = bayesian_mixture.fit_vb(
            key,
            device_train,
            components,
            covariance,
            weight_prior,
            max_iter=iterations,
            tol=0.0,
            n_init=n_init,
            init_responsibilities=start,
        )
        result["posterior"], result["info"] = jax.block_until_ready((posterior, info))

    first, ours = timed(fit, repeats)
    prior = bayesian_mixture.default_prior(device_train, components, covariance)

    def quality(posterior):
        """The held-out log-likelihood, the exact ELBO per training point and the components above 1%."""
        held_out = float(held_out_log_likelihood(posterior, device_test))
        elbo = float(bayesian_mixture.e_step(posterior, prior, device_train)[1])
        effective = int(bayesian_mixture.effective_components(posterior))
        return f"held-out log-lik {held_out:.4f}, ELBO/N {elbo:.4f} ({effective} comps > 1%)"

    workload = (
        f"{description}: N = {len(train):,} (held out {len(test):,}), D = {train.shape[1]}, K = {components}, "
        f"{covariance}, {weight_prior}, {iterations} iterations x {n_init} restart(s), float32, "
        + ("same start" if same_start else "own starts")
    )
    row = Row(
        name,
        workload,
        ours,
        first - ours,
        "scikit-learn",
        None,
        quality(result["posterior"]),
    )
    try:
        import sklearn
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture
    except ImportError:
        row.note = not_installed("scikit-learn")
        return row
    times = []
    for _ in range(max(1, peer_repeats)):
        reference = BayesianGaussianMixture(
            n_components=components,
            covariance_type=covariance,
            weight_concentration_prior_type=SKLEARN_WEIGHT_PRIORS[weight_prior],
            max_iter=iterations,
            tol=0.0,
            reg_covar=1e-6,
            n_init=n_init,
            random_state=0,
        )
        if start is not None:  # the first update from `start`, in place of scikit-learn's initialization
            reference._initialize_parameters = functools.partial(initialize_from, reference, start)
        begin = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of iterations, on purpose
            reference.fit(train)
        times.append(time.perf_counter() - begin)
    row.peer, row.peer_seconds = f"scikit-learn {sklearn.__version__}", statistics.median(times)
    row.peer_quality = quality(predictive_from_sklearn(reference, device_train.dtype))
    return row


def run(quick: bool = False) -> list[Row]:
    """The two workloads of the module docstring (`quick`: tiny sizes, to check that everything runs)."""
    if quick:
        data = make_data(2_500, 4, 3)
        synthetic = compare(
            "bgmm_full", "synthetic", data[:2_000], data[2_000:], 3, iterations=5, repeats=1, same_start=True
        )
    else:
        data = make_data(120_000, 32, 16)
        synthetic = compare(
            "bgmm_full", "synthetic", data[:100_000], data[100_000:], 16, iterations=100, same_start=True
        )
    try:
        train, test = digits()
    except ImportError:
        rows = [synthetic]
        rows.append(Row("bgmm_digits", "scikit-learn's digits", 0.0, 0.0, "scikit-learn", None))
        rows[-1].note = not_installed("scikit-learn") + "; the digits come with it"
        return rows
    if quick:
        real = compare("bgmm_digits", "digits", train, test, 3, iterations=5, n_init=2, repeats=1)
    else:
        real = compare("bgmm_digits", "digits", train, test, 10, iterations=200, n_init=4, repeats=5, peer_repeats=3)
    return [synthetic, real]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs")
    parser.add_argument("--json", metavar="FILE", help="also write the rows and the machine to FILE as JSON")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print_rows(rows)
    if args.json:
        description = f"{machine()}, jax {jax.__version__}" + (
            " (--quick: sizes too small to mean anything)" if args.quick else ""
        )
        with open(args.json, "w") as file:
            rows_json = [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows]
            json.dump({"machine": description, "quick": args.quick, "rows": rows_json}, file, indent=2)
    return rows


if __name__ == "__main__":
    main()

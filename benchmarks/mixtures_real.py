"""Gaussian mixtures on real data: held-out log-likelihood and collapsed components of maximum-likelihood EM,
MAP-EM and variational Bayes, lvmjax beside scikit-learn.

    python -m benchmarks.mixtures_real [--quick] [--splits 5] [--json FILE]

Four data sets of scikit-learn, each split at random 80/20 `--splits` times (seeds 0, 1, ...), K the
number of classes: iris (150 x 4, raw, K = 3), wine (178 x 13, K = 3), digits (1797 x 64, K = 10; the
pixels constant on the training part dropped) and breast cancer (569 x 30, K = 2), the last three
standardized by their training part. On every split, full and diagonal covariances, ten restarts each:

    lvmjax EM        `gaussian_mixture.fit_em(n_init=10)`: maximum likelihood, reg_covar 1e-6
    lvmjax MAP-EM    the same with `prior=default_prior(train, K, covariance)` (Fraley & Raftery 2007)
    lvmjax VB        `bayesian_mixture.fit_vb(n_init=10)`, Dirichlet-process weights, scikit-learn's priors
    sklearn GMM      `GaussianMixture(n_init=10)`
    sklearn BGMM     `BayesianGaussianMixture(n_init=10)`, the same priors as lvmjax VB

lvmjax fits the float32 data, scikit-learn the same values as float64, its own dtype (in float32 its
GaussianMixture fails on digits with full covariances: "ill-defined empirical covariance"); a fit that
raises, or whose fit is not finite, is counted as failed. All with at most 500 iterations and tol 1e-3
per datapoint (scikit-learn's BGMM takes its tol on the bound summed over the N points: N · 1e-3). The
held-out log-likelihood per test point is log p(x; θ̂) for EM, MAP-EM and the GMM, and the posterior
predictive (a mixture of Student-t's, `bayesian_mixture.log_predictive`) for the two variational fits,
scikit-learn's read into lvmjax's `Posterior`. A component is collapsed when the smallest diagonal entry
of its covariance's Cholesky factor, squared, is below 10 · reg_covar
(`gaussian_mixture.collapsed_components`), applied to every method's covariances (E[Λ_k]⁻¹ for the
variational ones).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine
from lvmjax.models import bayesian_mixture, gaussian_mixture

METHODS = ("lvmjax EM", "lvmjax MAP-EM", "lvmjax VB", "sklearn GMM", "sklearn BGMM")
REG_COVAR = 1e-6
TOL = 1e-3


def load(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(train, test, K) of one random 80/20 split of a scikit-learn data set, as the module docstring says."""
    from sklearn import datasets

    loaded = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "digits": datasets.load_digits,
        "breast cancer": datasets.load_breast_cancer,
    }[name]()
    data, num_classes = loaded.data.astype(np.float64), len(np.unique(loaded.target))
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(0.8 * len(data))
    train, test = data[order[:cut]], data[order[cut:]]
    if name != "iris":
        deviations = train.std(axis=0)
        keep = deviations > 0
        mean = train.mean(axis=0)
        train, test = ((part[:, keep] - mean[keep]) / deviations[keep] for part in (train, test))
    return train.astype(np.float32), test.astype(np.float32), num_classes


def _collapsed(covariances: np.ndarray) -> int:
    """Components whose covariance's Cholesky diagonal, squared, falls below 10 · reg_covar."""
    if covariances.ndim == 2:  # diagonal (K, D)
        variances = covariances
    else:
        variances = np.stack([np.diag(np.linalg.cholesky(c.astype(np.float64))) ** 2 for c in covariances])
    return int(np.sum(variances.min(axis=1) < 10 * REG_COVAR))


def _mean_log_likelihood(log_density: Callable, params, test: np.ndarray) -> float:
    return float(jnp.mean(jax.vmap(log_density, (None, 0))(params, jnp.asarray(test))))


def _covariances(params: gaussian_mixture.Params, covariance: str) -> np.ndarray:
    factors = np.asarray(params.scale_tril, np.float64)
    full = factors @ np.swapaxes(factors, 1, 2)
    return full if covariance == "full" else np.diagonal(full, axis1=1, axis2=2)


def fit_one(method: str, train: np.ndarray, test: np.ndarray, components: int, covariance: str, seed: int):
    """(held-out log-likelihood per test point, collapsed components, seconds) of one method on one split."""
    key = jax.random.key(seed)
    start = time.perf_counter()
    if method in ("lvmjax EM", "lvmjax MAP-EM"):
        prior = gaussian_mixture.default_prior(jnp.asarray(train), components, covariance)
        params, _ = gaussian_mixture.fit_em(
            key,
            jnp.asarray(train),
            components,
            covariance,
            max_iter=500,
            tol=TOL,
            reg_covar=REG_COVAR,
            n_init=10,
            prior=prior if method == "lvmjax MAP-EM" else None,
        )
        params = jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        heldout = _mean_log_likelihood(gaussian_mixture.log_marginal, params, test)
        return heldout, _collapsed(_covariances(params, covariance)), seconds
    if method == "lvmjax VB":
        posterior, _ = bayesian_mixture.fit_vb(
            key, jnp.asarray(train), components, covariance, max_iter=500, tol=TOL, reg_covar=REG_COVAR, n_init=10
        )
        posterior = jax.block_until_ready(posterior)
        seconds = time.perf_counter() - start
        heldout = _mean_log_likelihood(bayesian_mixture.log_predictive, posterior, test)
        return heldout, _collapsed(np.asarray(posterior.covariances)), seconds
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    from benchmarks.bgmm import predictive_from_sklearn

    options = dict(covariance_type=covariance, max_iter=500, reg_covar=REG_COVAR, n_init=10, random_state=seed)
    train64, test64 = train.astype(np.float64), test.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method == "sklearn GMM":
            fitted = GaussianMixture(components, tol=TOL, **options).fit(train64)
            seconds = time.perf_counter() - start
            return float(fitted.score(test64)), _collapsed(np.asarray(fitted.covariances_)), seconds
        fitted = BayesianGaussianMixture(n_components=components, tol=TOL * len(train), **options).fit(train64)
    seconds = time.perf_counter() - start
    posterior = predictive_from_sklearn(fitted, jnp.float32)
    heldout = _mean_log_likelihood(bayesian_mixture.log_predictive, posterior, test)
    return heldout, _collapsed(np.asarray(fitted.covariances_)), seconds


def run(splits: int = 5, names=("iris", "wine", "digits", "breast cancer"), covariances=("full", "diag")) -> list[dict]:
    """One entry per data set, covariance type and method: the held-out log-likelihood of every split, the
    collapsed components summed over the splits, and the seconds (the first split includes compilation)."""
    results = []
    for name in names:
        for covariance in covariances:
            entries = {method: {"heldout": [], "collapsed": 0, "seconds": []} for method in METHODS}
            for seed in range(splits):
                train, test, components = load(name, seed)
                for method in METHODS:
                    try:
                        heldout, collapsed, seconds = fit_one(method, train, test, components, covariance, seed)
                    except ValueError as error:  # scikit-learn's "ill-defined empirical covariance"
                        entries[method].setdefault("failed", []).append(str(error).split(".")[0])
                        continue
                    if not np.isfinite(heldout):  # lvmjax's EM: a covariance float32 could not factor
                        entries[method].setdefault("failed", []).append("non-finite fit")
                        continue
                    entries[method]["heldout"].append(heldout)
                    entries[method]["collapsed"] += collapsed
                    entries[method]["seconds"].append(seconds)
            for method, entry in entries.items():
                results.append(
                    {"data": name, "covariance": covariance, "method": method, "components": components, **entry}
                )
                failed = f", {len(entry['failed'])} failed" if entry.get("failed") else ""
                print(
                    f"{name:>13} {covariance:>4} {method:>13}: held-out {np.mean(entry['heldout']):8.3f} "
                    f"± {np.std(entry['heldout']):.3f} over {len(entry['heldout'])} splits{failed}, collapsed "
                    f"{entry['collapsed']:2d}, {np.median(entry['seconds']):.2f} s per fit",
                    flush=True,
                )
    return results


def format_table(results: list[dict]) -> str:
    """Markdown: one row per data set and covariance type, each method's mean held-out log-likelihood per
    point (collapsed components over all splits in brackets)."""
    lines = ["| data | covariance | K | " + " | ".join(METHODS) + " |", "| --- " * (3 + len(METHODS)) + "|"]
    rows: dict[tuple, dict] = {}
    for entry in results:
        rows.setdefault((entry["data"], entry["covariance"], entry["components"]), {})[entry["method"]] = entry
    for (name, covariance, components), methods in rows.items():
        cells = [
            f"{np.mean(methods[m]['heldout']):.3f} ({methods[m]['collapsed']})"
            + (f", {len(methods[m]['failed'])} failed" if methods[m].get("failed") else "")
            for m in METHODS
        ]
        lines.append(f"| {name} | {covariance} | {components} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one split of iris, full covariances only")
    parser.add_argument("--splits", type=int, default=5, help="random 80/20 splits per data set")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        results = run(splits=1, names=("iris",), covariances=("full",))
    else:
        results = run(splits=args.splits)
    print(f"\nMachine: {machine()}; jax {jax.__version__}\n")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine(), "quick": args.quick, "results": results}, file, indent=2)
    return results


if __name__ == "__main__":
    main()

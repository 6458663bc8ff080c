"""EM for a Gaussian mixture: lvmjax against scikit-learn, side by side.

    python -m benchmarks.gmm_em [--num-data N] [--data-dim D] [--components K] [--iterations T]
                                [--covariance full|diag|spherical]

Both run exactly T EM iterations (tolerance 0) from the same parameters (lvmjax's
k-means++ start), both in float32, and report
the seconds (median of repeats; lvmjax after compilation, whose time is shown
apart) and the final mean log-likelihood per datapoint of each. The two
configurations of the speed goal:

    python -m benchmarks.gmm_em                       # full, N = 100,000, D = 32, K = 16
    python -m benchmarks.gmm_em --covariance diag --num-data 1000000 --data-dim 64 --components 64
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Row, not_installed, print_rows, timed
from lvmjax.models import gaussian_mixture


def make_data(num_data, data_dim, num_components, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_components, data_dim)) * 3
    labels = rng.integers(0, num_components, num_data)
    scales = rng.uniform(0.5, 1.5, size=(num_components, data_dim))
    return (rng.normal(size=(num_data, data_dim)) * scales[labels] + means[labels]).astype(np.float32)


def sklearn_start(params, covariance_type):
    """scikit-learn's weights_init, means_init and precisions_init for the same θ_0."""
    tril = np.asarray(params.scale_tril, np.float64)
    precisions = np.linalg.inv(tril @ np.swapaxes(tril, 1, 2))
    if covariance_type == "diag":
        precisions = np.diagonal(precisions, axis1=1, axis2=2)
    elif covariance_type == "spherical":
        precisions = precisions[:, 0, 0]
    logits = np.asarray(params.logits, np.float64)
    weights = np.exp(logits - logits.max())
    return {
        "weights_init": weights / weights.sum(),
        "means_init": np.asarray(params.means, np.float64),
        "precisions_init": precisions,
    }


def run(
    num_data=100_000, data_dim=32, components=16, covariance="full", iterations=100, repeats=3, skip_sklearn=False
) -> list[Row]:
    """lvmjax's and scikit-learn's EM from the same start; one `Row` (peer time None when skipped)."""
    data = make_data(num_data, data_dim, components)
    device_data = jnp.asarray(data)
    key = jax.random.PRNGKey(0)
    start = jax.jit(gaussian_mixture.initial_params, static_argnums=(2, 3))(key, device_data, components, covariance)
    result = {}

    def fit():
        params, _ = gaussian_mixture.fit_em(
            key, device_data, components, covariance, max_iter=iterations, tol=0.0, init_params=start
        )
        result["params"] = jax.block_until_ready(params)

    first, ours = timed(fit, repeats)
    ours_log_likelihood = float(gaussian_mixture.e_step(result["params"], device_data)[1])
    workload = (
        f"{iterations} EM iterations, {covariance} covariance, N = {num_data:,}, D = {data_dim}, "
        f"K = {components}, float32, same start"
    )
    row = Row(
        "gmm_em" if covariance == "full" else f"gmm_em_{covariance}",
        workload,
        ours,
        first - ours,
        "scikit-learn",
        None,
        f"mean log-likelihood {ours_log_likelihood:.5f}",
    )
    if skip_sklearn:
        row.note = "skipped: --skip-sklearn"
        return [row]
    try:
        import sklearn
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture
    except ImportError:
        row.note = not_installed("scikit-learn")
        return [row]
    times = []
    for _ in range(max(1, repeats - 2)):
        reference = GaussianMixture(
            components,
            covariance_type=covariance,
            max_iter=iterations,
            tol=0.0,
            reg_covar=1e-6,
            **sklearn_start(start, covariance),
        )
        begin = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference.fit(data)
        times.append(time.perf_counter() - begin)
    row.peer, row.peer_seconds = f"scikit-learn {sklearn.__version__}", statistics.median(times)
    row.peer_quality = f"mean log-likelihood {reference.score(data):.5f}"
    return [row]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=100_000)
    parser.add_argument("--data-dim", "--dim", type=int, default=32)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--covariance", choices=gaussian_mixture.COVARIANCE_TYPES, default="full")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sklearn", action="store_true", help="time lvmjax alone")
    args = parser.parse_args(argv)
    rows = run(
        args.num_data, args.data_dim, args.components, args.covariance, args.iterations, args.repeats, args.skip_sklearn
    )
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()

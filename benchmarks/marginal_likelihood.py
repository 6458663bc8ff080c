"""Importance-sampled log p(x) over a dataset: time and memory, chunked and unchunked.

    python -m benchmarks.marginal_likelihood [--num-data N] [--num-samples K] [--chunk-size C]

For a factor-analysis model (D = 784 observed, d = 32 latent dimensions, the
size of a binarized-MNIST VAE's latent space) it estimates log p(x) of N
datapoints with K importance samples each from a Gaussian q near the exact
posterior, and reports:

- compile time and steady-state time (median of repeats) of the jitted, vmapped
  estimator, with and without chunking;
- XLA's temporary-buffer size for each compiled program (peak working memory);
- the mean |estimate - exact log p(x)| in units of the reported standard error.
"""

from __future__ import annotations

import argparse
import statistics
import time

import distrax
import jax
import jax.numpy as jnp
import numpy as np

import lvmjax
from benchmarks.common import machine
from lvmjax.models import linear_gaussian


def make_problem(num_data: int, data_dim: int, latent_dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = linear_gaussian.Params(
        weight=jnp.asarray(rng.normal(size=(data_dim, latent_dim)) / np.sqrt(latent_dim), jnp.float32),
        bias=jnp.asarray(rng.normal(size=data_dim), jnp.float32),
        noise_variance=jnp.asarray(rng.uniform(0.5, 1.5, size=data_dim), jnp.float32),
    )
    z = rng.normal(size=(num_data, latent_dim))
    noise = rng.normal(size=(num_data, data_dim)) * np.sqrt(np.asarray(params.noise_variance))
    data = jnp.asarray(z @ np.asarray(params.weight).T + np.asarray(params.bias) + noise, jnp.float32)
    return params, data


def proposal(params, x):
    """The exact posterior, widened by 20%: a good but imperfect q(z | x)."""
    posterior = linear_gaussian.posterior(params, x)
    return distrax.MultivariateNormalTri(posterior.mean(), 1.2 * posterior.scale_tri)


def estimator(params, num_samples, chunk_size):
    def one(key, x):
        return lvmjax.log_marginal_is(
            key, linear_gaussian.model, params, proposal(params, x), x, num_samples, chunk_size=chunk_size
        )

    return jax.jit(jax.vmap(one))


def measure(fn, keys, data, repeats):
    start = time.perf_counter()
    compiled = fn.lower(keys, data).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(keys, data))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(compiled(keys, data))
        times.append(time.perf_counter() - start)
    memory = compiled.memory_analysis()
    return result, compile_seconds, statistics.median(times), memory.temp_size_in_bytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--data-dim", type=int, default=784)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    params, data = make_problem(args.num_data, args.data_dim, args.latent_dim)
    keys = jax.random.split(jax.random.PRNGKey(0), args.num_data)
    exact = jax.jit(jax.vmap(lambda x: linear_gaussian.log_marginal(params, x)))(data)

    print(f"machine: {machine()}, jax {jax.__version__}")
    print(
        f"N = {args.num_data} datapoints, D = {args.data_dim}, d = {args.latent_dim}, "
        f"K = {args.num_samples} samples each"
    )
    print(f"{'chunk_size':>10} {'compile s':>10} {'run s':>8} {'samples/s':>12} {'temp MiB':>9} {'|err|/se':>9}")
    for chunk_size in (None, args.chunk_size):
        fn = estimator(params, args.num_samples, chunk_size)
        result, compile_seconds, seconds, temp_bytes = measure(fn, keys, data, args.repeats)
        error = np.mean(np.abs(np.asarray(result.log_marginal - exact)) / np.asarray(result.stderr))
        rate = args.num_data * args.num_samples / seconds
        print(
            f"{chunk_size!s:>10} {compile_seconds:>10.2f} {seconds:>8.3f} {rate:>12.3g} "
            f"{temp_bytes / 2**20:>9.1f} {error:>9.2f}"
        )


if __name__ == "__main__":
    main()

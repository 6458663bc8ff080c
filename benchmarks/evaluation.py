"""Importance-sampled test NLL with K = 5000: lvmjax against a PyTorch loop over datapoints.

    python -m benchmarks.evaluation [--num-test 1000] [--num-samples 5000] [--data-dir DIR] [--quick]

The evaluation that every VAE paper reports (Burda et al. 2016):

    log p(x) ≈ log (1/K) Σ_k p(x, z_k; θ) / q(z_k | x),   z_k ~ q(z | x; φ),   K = 5000

for the network of Burda et al. (784-200-200-50, tanh, Bernoulli decoder), on
the binarized-MNIST test images (random binary images where the data is not
found; the time does not depend on the pixel values). The weights are PyTorch's
fresh initialization, copied into lvmjax's network: the cost does not depend on
them, and both sides estimate the same log p(x).

- lvmjax: `amortized.log_marginal` (the encoder's q as the proposal) with
  `chunk_size` samples drawn and reduced at a time, vmapped over a block of
  images and mapped over the blocks (`jax.lax.map`), one jitted program.
- PyTorch: the loop that PyTorch VAE libraries write: for each test image, the
  K samples in chunks, each chunk decoded as one batch under `torch.no_grad()`,
  the log-weights accumulated and reduced by `torch.logsumexp`.

Both sides use the same chunk size, so neither holds more than chunk × 784
logits per image at once: memory does not grow with K. The compiled program's
temporary memory is reported for several K to show it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import mnist_quality
from benchmarks.common import DEFAULT_DATA_DIR, Row, not_installed, print_rows, timed
from lvmjax import amortized
from lvmjax import data as data_lib


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_test: int = 1000
    num_samples: int = 5000
    chunk_size: int = 500
    block: int = 8  # images evaluated together (vmapped) by lvmjax
    hidden: tuple[int, ...] = (200, 200)
    latent_dim: int = 50
    data_dim: int = 784


FULL = Sizes()
QUICK = Sizes(num_test=16, num_samples=100, chunk_size=50, block=4)


def test_images(sizes: Sizes, data_dir) -> tuple[np.ndarray, str]:
    """The first `num_test` binarized-MNIST test images, or random binary ones where the data is absent."""
    try:
        test = data_lib.load_binarized_mnist(data_dir).test
        return np.asarray(test[: sizes.num_test], np.float32), "binarized-MNIST test images"
    except data_lib.DataError:
        rng = np.random.default_rng(0)
        return (rng.random((sizes.num_test, sizes.data_dim)) < 0.13).astype(np.float32), "random binary images"


def make_network(sizes: Sizes):
    """The VAE and a fresh initialization of its weights: PyTorch's where PyTorch is installed (then both
    sides hold the same numbers), else lvmjax's."""
    model = dataclasses.replace(mnist_quality.MODELS["burda-vae"], hidden=sizes.hidden, latent_dim=sizes.latent_dim)
    vae = amortized.make_vae(sizes.data_dim, sizes.latent_dim, hidden=sizes.hidden, activation=model.activation)
    try:
        import torch
    except ImportError:
        return vae, vae.init(jax.random.PRNGKey(0)), None
    torch.manual_seed(0)
    encoder, decoder = mnist_quality.torch_networks(model, sizes.data_dim)
    return vae, mnist_quality.lvmjax_params(encoder, decoder), (encoder, decoder)


def lvmjax_evaluator(vae, sizes: Sizes):
    """`evaluate(key, params, images) -> (log p̂(x_i), se_i)` for images of shape (num_blocks · block, D)."""

    def one_image(key, params, x):
        estimate = amortized.log_marginal(key, vae, params, x, sizes.num_samples, chunk_size=sizes.chunk_size)
        return estimate.log_marginal, estimate.stderr

    def evaluate(key, params, images):
        keys = jax.random.split(key, images.shape[0])
        blocks = (keys.reshape(-1, sizes.block, *keys.shape[1:]), images.reshape(-1, sizes.block, images.shape[1]))
        results = jax.lax.map(lambda block: jax.vmap(one_image, (0, None, 0))(block[0], params, block[1]), blocks)
        return jax.tree_util.tree_map(lambda leaf: leaf.reshape(-1), results)

    return jax.jit(evaluate)


def temporary_bytes(vae, params, sizes: Sizes, num_samples: int) -> int:
    """XLA's temporary-buffer size of the compiled evaluation of one block with K = num_samples."""
    evaluate = lvmjax_evaluator(vae, dataclasses.replace(sizes, num_samples=num_samples))
    images = jax.ShapeDtypeStruct((sizes.block, sizes.data_dim), jnp.float32)
    compiled = evaluate.lower(jax.random.PRNGKey(0), params, images).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def torch_evaluate(encoder, decoder, images: np.ndarray, sizes: Sizes) -> np.ndarray:
    """log p̂(x_i) for every image, one image at a time, the K samples in chunks (no gradients)."""
    import torch
    from torch.nn import functional

    log_normal_constant = 0.5 * sizes.latent_dim * math.log(2 * math.pi)
    results = []
    with torch.no_grad():
        for x in torch.from_numpy(images):
            mean, log_scale = encoder(x).chunk(2)
            log_weights = []
            for _ in range(sizes.num_samples // sizes.chunk_size):
                noise = torch.randn(sizes.chunk_size, sizes.latent_dim)
                z = mean + torch.exp(log_scale) * noise
                log_likelihood = -functional.binary_cross_entropy_with_logits(
                    decoder(z), x.expand(sizes.chunk_size, -1), reduction="none"
                ).sum(-1)
                log_prior = -0.5 * (z**2).sum(-1) - log_normal_constant
                log_q = (-0.5 * noise**2 - log_scale).sum(-1) - log_normal_constant
                log_weights.append(log_likelihood + log_prior - log_q)
            results.append(float(torch.logsumexp(torch.cat(log_weights), 0)) - math.log(sizes.num_samples))
    return np.asarray(results)


def run(
    quick: bool = False, num_test: int | None = None, num_samples: int | None = None, data_dir=DEFAULT_DATA_DIR
) -> list[Row]:
    sizes = QUICK if quick else FULL
    sizes = dataclasses.replace(
        sizes, num_test=num_test or sizes.num_test, num_samples=num_samples or sizes.num_samples
    )
    if sizes.num_samples % sizes.chunk_size or sizes.num_test % sizes.block:
        raise ValueError(
            f"num_samples must be a multiple of {sizes.chunk_size} and num_test of {sizes.block}, "
            f"got {sizes.num_samples} and {sizes.num_test}."
        )
    images, source = test_images(sizes, data_dir)
    vae, params, torch_networks = make_network(sizes)
    evaluate = lvmjax_evaluator(vae, sizes)
    device_images = jax.device_put(images)
    result = {}

    def ours():
        result["lvmjax"] = jax.device_get(evaluate(jax.random.PRNGKey(1), params, device_images))

    first, steady = timed(ours, 1)
    log_marginals, stderrs = result["lvmjax"]
    memory = {
        k: temporary_bytes(vae, params, sizes, k) for k in (sizes.chunk_size, sizes.num_samples, 10 * sizes.num_samples)
    }
    workload = (
        f"K = {sizes.num_samples} importance samples for each of {sizes.num_test} {source}, "
        f"MLP 784-{'-'.join(map(str, sizes.hidden))}-{sizes.latent_dim} tanh, chunks of {sizes.chunk_size}, "
        "float32"
    )
    memory_text = ", ".join(f"K = {k}: {b / 2**20:.1f} MiB" for k, b in memory.items())
    quality = (
        f"NLL {-log_marginals.mean():.3f} ± {np.sqrt(np.sum(stderrs**2)) / sizes.num_test:.3f}; "
        f"{sizes.num_test / steady:,.1f} images/s; temporary memory {memory_text}"
    )
    if torch_networks is None:
        return [
            Row(
                "evaluation",
                workload,
                steady,
                first - steady,
                "PyTorch loop over datapoints",
                None,
                quality,
                note=not_installed("PyTorch"),
            )
        ]
    import torch

    encoder, decoder = torch_networks

    def theirs():
        result["torch"] = torch_evaluate(encoder, decoder, images, sizes)

    _, peer_seconds = timed(theirs, 1)
    peer_quality = f"NLL {-result['torch'].mean():.3f}; {sizes.num_test / peer_seconds:,.1f} images/s"
    return [
        Row(
            "evaluation",
            workload,
            steady,
            first - steady,
            f"PyTorch {torch.__version__} loop over datapoints",
            peer_seconds,
            quality,
            peer_quality,
        )
    ]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-test", type=int, default=None, help=f"test images (default {FULL.num_test})")
    parser.add_argument("--num-samples", type=int, default=None, help=f"K (default {FULL.num_samples})")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the folder of binarized_mnist.npz")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.num_test, args.num_samples, args.data_dir)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()

"""VAE training throughput: lvmjax against PyTorch eager, and lvmjax's FLOP/s against the matmul peak.

    python -m benchmarks.vae_training [--num-data 10000] [--repeats 3] [--quick]

Both sides train the same VAE on the same random binary images (throughput does
not depend on their values): an MLP encoder 784-512-512-(2·32) and decoder
32-512-512-784 with tanh-approximated GELU, a mean-field Gaussian q(z | x), a
Bernoulli likelihood, one reparameterized sample with the analytic KL, batches of
128 in a shuffled order, Adam at 1e-3, float32. lvmjax runs one jitted epoch
(`training.make_epoch`, a `lax.scan` over the minibatches); PyTorch runs the
usual eager loop. Each side's time is the median of `--repeats` epochs after one
warm-up epoch (for lvmjax, the first epoch includes tracing and compilation).

FLOPs per image: a dense layer of m inputs and n outputs costs 2mn in the forward
pass and 4mn in the backward pass, so training costs 3 × 2 Σ mn per image; the
elementwise work is left out, which understates what is done, not overstates it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools

import jax
import numpy as np
import optax

from benchmarks.common import Row, machine, matmul_peak, timed
from lvmjax import amortized, training


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_data: int = 10_000
    data_dim: int = 784
    hidden: tuple[int, ...] = (512, 512)
    latent_dim: int = 32
    batch_size: int = 128


FULL = Sizes()
QUICK = Sizes(num_data=256, data_dim=64, hidden=(32,), latent_dim=4, batch_size=32)


def flops_per_image(sizes: Sizes) -> int:
    """3 × 2 Σ m n over the dense layers of the encoder and the decoder (see the module's docstring)."""
    def dense(widths):
        return sum(m * n for m, n in itertools.pairwise(widths))

    encoder = dense([sizes.data_dim, *sizes.hidden, 2 * sizes.latent_dim])
    decoder = dense([sizes.latent_dim, *sizes.hidden, sizes.data_dim])
    return 3 * 2 * (encoder + decoder)


def make_data(sizes: Sizes, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((sizes.num_data, sizes.data_dim)) < 0.3).astype(np.float32)


def lvmjax_epoch(data: np.ndarray, sizes: Sizes, repeats: int) -> tuple[float, float, float]:
    """(first epoch's seconds, median epoch seconds, mean ELBO of the last epoch)."""
    vae = amortized.make_vae(sizes.data_dim, sizes.latent_dim, hidden=sizes.hidden)
    optimizer = optax.adam(1e-3)
    state = training.init_train_state(vae.init(jax.random.PRNGKey(0)), optimizer)
    epoch = jax.jit(training.make_epoch(training.make_train_step(amortized.elbo_objective(vae), optimizer),
                                        sizes.batch_size))
    device_data = jax.device_put(data)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), repeats + 2))
    result = {}

    def one_epoch():
        nonlocal state
        state, metrics = epoch(state, next(keys), device_data)
        result["elbo"] = float(metrics.objective.mean())  # blocks until the epoch is done

    first, steady = timed(one_epoch, repeats)
    return first, steady, result["elbo"]


def torch_epoch(data: np.ndarray, sizes: Sizes, repeats: int) -> tuple[float, float, str] | None:
    """(median epoch seconds, mean ELBO of the last epoch, version) of the PyTorch eager loop; None
    if PyTorch is not installed."""
    try:
        import torch
        from torch import nn
        from torch.nn import functional
    except ImportError:
        return None
    torch.manual_seed(0)

    def mlp(widths):
        layers = []
        for m, n in itertools.pairwise(widths):
            layers += [nn.Linear(m, n), nn.GELU(approximate="tanh")]
        return nn.Sequential(*layers[:-1])  # no activation after the last layer

    encoder = mlp([sizes.data_dim, *sizes.hidden, 2 * sizes.latent_dim])
    decoder = mlp([sizes.latent_dim, *sizes.hidden, sizes.data_dim])
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    images = torch.from_numpy(data)
    num_batches = sizes.num_data // sizes.batch_size
    result = {}

    def negative_elbo(x):
        mean, log_scale = encoder(x).chunk(2, dim=-1)
        z = mean + torch.exp(log_scale) * torch.randn_like(mean)
        reconstruction = -functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
        kl = (0.5 * (mean**2 + torch.exp(2 * log_scale) - 1) - log_scale).sum(-1)
        return -(reconstruction - kl).mean()

    def one_epoch():
        order = torch.randperm(sizes.num_data)
        total = 0.0
        for index in range(num_batches):
            batch = images[order[index * sizes.batch_size:(index + 1) * sizes.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = negative_elbo(batch)
            loss.backward()
            optimizer.step()
            total += loss.item()
        result["elbo"] = -total / num_batches

    _, steady = timed(one_epoch, repeats)
    return steady, result["elbo"], torch.__version__


def run(quick: bool = False, repeats: int = 3, num_data: int | None = None) -> list[Row]:
    sizes = QUICK if quick else FULL
    if num_data is not None:
        sizes = dataclasses.replace(sizes, num_data=num_data)
    repeats = 1 if quick else repeats
    data = make_data(sizes)
    images = (sizes.num_data // sizes.batch_size) * sizes.batch_size
    peak = matmul_peak(256 if quick else 2048)
    first, steady, elbo = lvmjax_epoch(data, sizes, repeats)
    achieved = flops_per_image(sizes) * images / steady
    workload = (f"one epoch, {images} images of {sizes.data_dim}, MLP {'-'.join(map(str, sizes.hidden))}, "
                f"d = {sizes.latent_dim}, batch {sizes.batch_size}, Adam, float32")
    ours = (f"{images / steady:,.0f} images/s, {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of "
            f"the {peak / 1e9:.1f} GFLOP/s matmul peak; ELBO {elbo:.2f}")
    peer = torch_epoch(data, sizes, repeats)
    if peer is None:
        return [Row("vae_training", workload, steady, first - steady, "PyTorch eager", None, ours,
                    note="skipped: PyTorch is not installed (pip install -e '.[bench]')")]
    seconds, peer_elbo, version = peer
    return [Row("vae_training", workload, steady, first - steady, f"PyTorch {version} eager", seconds, ours,
                f"{images / seconds:,.0f} images/s; ELBO {peer_elbo:.2f}")]


def main(argv=None) -> list[Row]:
    from benchmarks.run import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=None, help=f"images per epoch (default {FULL.num_data})")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed after the warm-up; the median counts")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.repeats, args.num_data)
    print(f"machine: {machine()}, jax {jax.__version__}")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()

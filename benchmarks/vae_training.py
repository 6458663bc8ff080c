"""VAE and IWAE training throughput: lvmjax against PyTorch eager and NumPyro, and lvmjax's FLOP/s
against the matmul peak.

    python -m benchmarks.vae_training [--num-samples K] [--num-data N] [--repeats 3] [--quick]

Every side trains the same model on the same random binary images (throughput
does not depend on their values): an MLP encoder 784-512-512-(2·32) and decoder
32-512-512-784 with tanh-approximated GELU, a mean-field Gaussian q(z | x), a
Bernoulli likelihood, batches of 128 in a shuffled order, Adam at 1e-3, float32.
With K = 1 (`--num-samples 1`, the default) the objective is the ELBO with one
reparameterized sample and the analytic KL; with K > 1 it is the IWAE bound
with K samples per datapoint.

- lvmjax: one jitted epoch (`training.make_epoch`, a `lax.scan` over the
  minibatches) of `elbo_objective` or `iwae_objective`.
- PyTorch: the usual eager loop; the IWAE decodes all K × B latents at once and
  takes the log-sum-exp over K.
- NumPyro: a model and a guide holding the same Flax networks through
  `flax_module`, `SVI` with `TraceMeanField_ELBO` (K = 1, analytic KL) or
  `RenyiELBO(alpha=0, num_particles=K)` (the IWAE bound), and its epoch also
  compiled as one `lax.scan` of `svi.update` over the minibatches.

Each side's time is the median of `--repeats` epochs after one warm-up epoch
(for the compiled sides, the first epoch includes tracing and compilation,
reported apart).

FLOPs per image: a dense layer of m inputs and n outputs costs 2mn in the forward
pass and 4mn in the backward pass, so training costs 3 × 2 Σ mn per image, the
decoder's counted K times; the elementwise work is left out, which understates
what is done, not overstates it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import Row, matmul_peak, not_installed, print_rows, timed
from lvmjax import amortized, training


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_data: int = 10_000
    data_dim: int = 784
    hidden: tuple[int, ...] = (512, 512)
    latent_dim: int = 32
    batch_size: int = 128
    num_samples: int = 1


FULL = Sizes()
QUICK = Sizes(num_data=256, data_dim=64, hidden=(32,), latent_dim=4, batch_size=32)
IMAGES_PER_EPOCH = {1: 10_000, 5: 10_000, 50: 2_560}
"""The default epoch length for each K: the IWAE with K = 50 decodes 50 latents per image, so its
epoch is shorter to keep the benchmark to seconds (throughput is per image either way)."""


def flops_per_image(sizes: Sizes) -> int:
    """3 × 2 Σ m n over the dense layers of the encoder and, K times, the decoder (see the module's docstring)."""

    def dense(widths):
        return sum(m * n for m, n in itertools.pairwise(widths))

    encoder = dense([sizes.data_dim, *sizes.hidden, 2 * sizes.latent_dim])
    decoder = dense([sizes.latent_dim, *sizes.hidden, sizes.data_dim])
    return 3 * 2 * (encoder + sizes.num_samples * decoder)


def objective_name(sizes: Sizes) -> str:
    return "ELBO" if sizes.num_samples == 1 else f"IWAE bound (K = {sizes.num_samples})"


def make_data(sizes: Sizes, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((sizes.num_data, sizes.data_dim)) < 0.3).astype(np.float32)


def lvmjax_epoch(data: np.ndarray, sizes: Sizes, repeats: int) -> tuple[float, float, float]:
    """(first epoch's seconds, median epoch seconds, mean ELBO of the last epoch)."""
    vae = amortized.make_vae(sizes.data_dim, sizes.latent_dim, hidden=sizes.hidden)
    optimizer = optax.adam(1e-3)
    state = training.init_train_state(vae.init(jax.random.PRNGKey(0)), optimizer)
    objective = (
        amortized.elbo_objective(vae) if sizes.num_samples == 1 else amortized.iwae_objective(vae, sizes.num_samples)
    )
    epoch = jax.jit(training.make_epoch(training.make_train_step(objective, optimizer), sizes.batch_size))
    device_data = jax.device_put(data)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), repeats + 2))
    result = {}

    def one_epoch():
        nonlocal state
        state, info = epoch(state, next(keys), device_data)
        result["elbo"] = float(info.objective.mean())  # blocks until the epoch is done

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

    def negative_iwae_bound(x):
        mean, log_scale = encoder(x).chunk(2, dim=-1)
        noise = torch.randn(sizes.num_samples, *mean.shape)
        z = mean + torch.exp(log_scale) * noise  # (K, B, d)
        log_likelihood = -functional.binary_cross_entropy_with_logits(
            decoder(z), x.expand(sizes.num_samples, -1, -1), reduction="none"
        ).sum(-1)
        log_prior = -0.5 * (z**2).sum(-1)  # the constants of log p(z) and log q(z | x) cancel
        log_q = (-0.5 * noise**2 - log_scale).sum(-1)
        log_weights = log_likelihood + log_prior - log_q
        bound = torch.logsumexp(log_weights, 0) - math.log(sizes.num_samples)
        return -bound.mean()

    loss_fn = negative_elbo if sizes.num_samples == 1 else negative_iwae_bound

    def one_epoch():
        order = torch.randperm(sizes.num_data)
        total = 0.0
        for index in range(num_batches):
            batch = images[order[index * sizes.batch_size : (index + 1) * sizes.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            optimizer.step()
            total += loss.item()
        result["elbo"] = -total / num_batches

    _, steady = timed(one_epoch, repeats)
    return steady, result["elbo"], torch.__version__


def numpyro_epoch(data: np.ndarray, sizes: Sizes, repeats: int) -> tuple[float, float, float, str] | None:
    """(first epoch's seconds, median epoch seconds, mean ELBO (or IWAE bound) per image of the last
    epoch, version) of NumPyro's SVI with the same networks; None if NumPyro is not installed."""
    try:
        import numpyro
        from numpyro import distributions as dist
        from numpyro.contrib.module import flax_module
        from numpyro.infer import SVI, RenyiELBO, TraceMeanField_ELBO
    except ImportError:
        return None
    import flax.linen as nn

    class MLP(nn.Module):  # acts on a batch, as NumPyro's examples write their networks
        widths: tuple[int, ...]

        @nn.compact
        def __call__(self, h):
            for width in self.widths[:-1]:
                h = nn.gelu(nn.Dense(width)(h))
            return nn.Dense(self.widths[-1])(h)

    d, batch_size = sizes.latent_dim, sizes.batch_size

    def model(batch):
        decoder = flax_module("decoder", MLP((*sizes.hidden, sizes.data_dim)), input_shape=(batch_size, d))
        with numpyro.plate("batch", batch.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=batch)

    def guide(batch):
        encoder = flax_module("encoder", MLP((*sizes.hidden, 2 * d)), input_shape=(batch_size, sizes.data_dim))
        out = encoder(batch)
        with numpyro.plate("batch", batch.shape[0]):
            numpyro.sample("z", dist.Normal(out[..., :d], jnp.exp(out[..., d:])).to_event(1))

    loss = TraceMeanField_ELBO() if sizes.num_samples == 1 else RenyiELBO(alpha=0.0, num_particles=sizes.num_samples)
    svi = SVI(model, guide, optax.adam(1e-3), loss)
    device_data = jax.device_put(data)
    svi_state = svi.init(jax.random.PRNGKey(0), device_data[:batch_size])

    @jax.jit
    def epoch(svi_state, key):
        indices = training.minibatch_indices(key, sizes.num_data, batch_size)
        return jax.lax.scan(
            lambda state, batch_indices: svi.update(state, device_data[batch_indices]), svi_state, indices
        )

    keys = iter(jax.random.split(jax.random.PRNGKey(1), repeats + 2))
    result = {}

    def one_epoch():
        nonlocal svi_state
        svi_state, losses = epoch(svi_state, next(keys))
        result["elbo"] = -float(losses.mean()) / batch_size  # the loss sums over the batch; blocks

    first, steady = timed(one_epoch, repeats)
    return first, steady, result["elbo"], numpyro.__version__


def run(
    quick: bool = False,
    repeats: int = 3,
    num_data: int | None = None,
    num_samples: int = 1,
    peers: tuple[str, ...] = ("pytorch", "numpyro"),
) -> list[Row]:
    """One row per peer: lvmjax's epoch against PyTorch eager's and NumPyro's, with K = `num_samples`."""
    sizes = dataclasses.replace(QUICK if quick else FULL, num_samples=num_samples)
    if num_data is not None or not quick:
        sizes = dataclasses.replace(sizes, num_data=num_data or IMAGES_PER_EPOCH.get(num_samples, FULL.num_data))
    repeats = 1 if quick else repeats
    data = make_data(sizes)
    images = (sizes.num_data // sizes.batch_size) * sizes.batch_size
    peak = matmul_peak(256 if quick else 2048)
    first, steady, elbo = lvmjax_epoch(data, sizes, repeats)
    achieved = flops_per_image(sizes) * images / steady
    name = "vae_training" if num_samples == 1 else f"iwae_training_k{num_samples}"
    workload = (
        f"one epoch, {images} images of {sizes.data_dim}, MLP {'-'.join(map(str, sizes.hidden))}, "
        f"d = {sizes.latent_dim}, {objective_name(sizes)}, batch {sizes.batch_size}, Adam, float32"
    )
    ours = (
        f"{images / steady:,.0f} images/s, {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of "
        f"the {peak / 1e9:.1f} GFLOP/s matmul peak; {objective_name(sizes)} {elbo:.2f}"
    )
    rows = []
    if "pytorch" in peers:
        peer = torch_epoch(data, sizes, repeats)
        if peer is None:
            rows.append(
                Row(name, workload, steady, first - steady, "PyTorch eager", None, ours, note=not_installed("PyTorch"))
            )
        else:
            seconds, peer_elbo, version = peer
            rows.append(
                Row(
                    name,
                    workload,
                    steady,
                    first - steady,
                    f"PyTorch {version} eager",
                    seconds,
                    ours,
                    f"{images / seconds:,.0f} images/s; {objective_name(sizes)} {peer_elbo:.2f}",
                )
            )
    if "numpyro" in peers:
        peer = numpyro_epoch(data, sizes, repeats)
        if peer is None:
            rows.append(
                Row(name, workload, steady, first - steady, "NumPyro SVI", None, ours, note=not_installed("NumPyro"))
            )
        else:
            peer_first, seconds, peer_elbo, version = peer
            rows.append(
                Row(
                    name,
                    workload,
                    steady,
                    first - steady,
                    f"NumPyro {version} SVI (scanned epoch)",
                    seconds,
                    ours,
                    f"{images / seconds:,.0f} images/s, compile {peer_first - seconds:.2f} s; "
                    f"{objective_name(sizes)} {peer_elbo:.2f}",
                )
            )
    return rows


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1, help="K: 1 trains the VAE (ELBO), K > 1 the IWAE")
    parser.add_argument(
        "--num-data",
        type=int,
        default=None,
        help=f"images per epoch (default {IMAGES_PER_EPOCH} by K, else {FULL.num_data})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed after the warm-up; the median counts")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f"--num-samples must be at least 1, got {args.num_samples}")
    rows = run(args.quick, args.repeats, args.num_data, args.num_samples)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()

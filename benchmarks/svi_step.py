"""Non-amortized SVI: one step on every per-datapoint φ_i, lvmjax against NumPyro's AutoNormal and
against the seed text's algorithm written as a Python loop over datapoints.

    python -m benchmarks.svi_step [--num-data 10000] [--repeats 5] [--loop-data 200] [--quick]

N random binary images of 784 pixels; a fixed decoder p(x | z; θ) (MLP
16-256-256-784, GELU, Bernoulli); for each datapoint a mean-field Gaussian
q(z_i; φ_i) with its own mean and log-scale; the ELBO with one reparameterized
sample and the analytic KL; Adam at 1e-2 on the φ_i. One step updates every φ_i
once (the inner loop of the seed text's algorithm, §4.1, over the whole data).

- lvmjax: `svi.make_local_update`, vmapped over the N datapoints, jitted.
- NumPyro: a model with a plate of N local latents z_i ~ N(0, I) and
  x_i ~ Bernoulli(decoder(z_i)) (the decoder's weights fixed, closed over),
  `AutoNormal` (a Gaussian mean and scale per z_i), `TraceMeanField_ELBO`,
  `jax.jit(svi.update)`.
- Python loops, the algorithm written literally: for i = 1 … N, φ_i ← one Adam
  step on ∇_{φ_i} ELBO(x_i; θ, φ_i); once with each update jitted, and once in
  eager JAX (no `jax.jit`). They are timed on the first `--loop-data`
  datapoints and scaled to N.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import Row, not_installed, print_rows, timed
from lvmjax import amortized, svi


@dataclasses.dataclass(frozen=True)
class Sizes:
    num_data: int = 10_000
    data_dim: int = 784
    hidden: tuple[int, ...] = (256, 256)
    latent_dim: int = 16
    loop_data: int = 200  # datapoints on which the Python loops are timed


FULL = Sizes()
QUICK = Sizes(num_data=256, data_dim=64, hidden=(32,), latent_dim=4, loop_data=8)
LEARNING_RATE = 1e-2


def setup(sizes: Sizes):
    data = jnp.asarray(np.random.default_rng(0).random((sizes.num_data, sizes.data_dim)) < 0.2, jnp.float32)
    vae = amortized.make_vae(sizes.data_dim, sizes.latent_dim, hidden=sizes.hidden)
    theta = {"decoder": vae.init(jax.random.PRNGKey(0))["decoder"]}
    return data, vae, theta


def lvmjax_steps(data, vae, theta, repeats: int) -> tuple[float, float, float]:
    """(first step's seconds, median step seconds, mean ELBO of the last step)."""
    optimizer = optax.adam(LEARNING_RATE)
    update = jax.jit(svi.make_local_update(vae.model, vae.family, optimizer, analytic_kl=True))
    phi = jax.vmap(vae.family.init)(jax.random.split(jax.random.PRNGKey(1), data.shape[0]))
    state = {"phi": phi, "opt_state": jax.vmap(optimizer.init)(phi), "elbo": None}
    keys = iter(jax.random.split(jax.random.PRNGKey(2), repeats + 2))

    def step():
        state["phi"], state["opt_state"], elbos = update(next(keys), theta, state["phi"], state["opt_state"], data)
        state["elbo"] = float(elbos.mean())  # blocks

    first, steady = timed(step, repeats)
    return first, steady, state["elbo"]


def loop_seconds(data, vae, theta, loop_data: int, jit: bool) -> float:
    """Seconds per datapoint of the literal loop: one Adam step on φ_i at a time."""
    optimizer = optax.adam(LEARNING_RATE)
    update = svi.make_local_update(vae.model, vae.family, optimizer, analytic_kl=True)
    if jit:
        update = jax.jit(update)
    phi = jax.vmap(vae.family.init)(jax.random.split(jax.random.PRNGKey(1), loop_data))
    opt_state = jax.vmap(optimizer.init)(phi)
    rows = [jax.tree_util.tree_map(lambda leaf, i=i: leaf[i : i + 1], (phi, opt_state)) for i in range(loop_data)]
    key = jax.random.PRNGKey(2)
    jax.block_until_ready(update(key, theta, *rows[0], data[:1]))  # compile (or warm up) once
    begin = time.perf_counter()
    for i, (phi_i, opt_state_i) in enumerate(rows):
        rows[i] = update(jax.random.fold_in(key, i), theta, phi_i, opt_state_i, data[i : i + 1])[:2]
    jax.block_until_ready(rows)
    return (time.perf_counter() - begin) / loop_data


def numpyro_steps(data, vae, theta, sizes: Sizes, repeats: int) -> tuple[float, float, float, str] | None:
    """(first step's seconds, median step seconds, mean ELBO per datapoint of the last step, version)."""
    try:
        import numpyro
        from numpyro import distributions as dist
        from numpyro.infer import SVI, TraceMeanField_ELBO, init_to_median
        from numpyro.infer.autoguide import AutoNormal
    except ImportError:
        return None

    def model(data):
        with numpyro.plate("data", data.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([sizes.latent_dim]).to_event(1))
            logits = jax.vmap(lambda z_i: vae.model.likelihood(theta, z_i).distribution.logits)(z)
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=data)

    # init_scale=1: the same start as lvmjax's φ_i (mean 0, the prior's median, and σ = 1).
    guide = AutoNormal(model, init_loc_fn=init_to_median, init_scale=1.0)
    inference = SVI(model, guide, optax.adam(LEARNING_RATE), TraceMeanField_ELBO())
    svi_state = inference.init(jax.random.PRNGKey(1), data)
    update = jax.jit(inference.update)
    result = {}

    def step():
        nonlocal svi_state
        svi_state, loss = update(svi_state, data)
        result["elbo"] = -float(loss) / data.shape[0]  # the loss sums over the datapoints; blocks

    first, steady = timed(step, repeats)
    return first, steady, result["elbo"], numpyro.__version__


def run(quick: bool = False, repeats: int = 5, num_data: int | None = None, loop_data: int | None = None) -> list[Row]:
    sizes = QUICK if quick else FULL
    sizes = dataclasses.replace(sizes, num_data=num_data or sizes.num_data, loop_data=loop_data or sizes.loop_data)
    repeats = 1 if quick else repeats
    data, vae, theta = setup(sizes)
    first, steady, elbo = lvmjax_steps(data, vae, theta, repeats)
    n = sizes.num_data
    workload = (
        f"one Adam step on every φ_i of N = {n} datapoints of {sizes.data_dim}, fixed decoder MLP "
        f"{sizes.latent_dim}-{'-'.join(map(str, sizes.hidden))}-{sizes.data_dim}, ELBO with analytic KL, "
        "float32"
    )
    ours = f"{1 / steady:.2f} steps/s = {n / steady:,.0f} φ updates/s; ELBO {elbo:.2f}"
    rows = []
    peer = numpyro_steps(data, vae, theta, sizes, repeats)
    if peer is None:
        rows.append(
            Row(
                "svi_step",
                workload,
                steady,
                first - steady,
                "NumPyro AutoNormal",
                None,
                ours,
                note=not_installed("NumPyro"),
            )
        )
    else:
        peer_first, seconds, peer_elbo, version = peer
        rows.append(
            Row(
                "svi_step",
                workload,
                steady,
                first - steady,
                f"NumPyro {version} AutoNormal, jitted update",
                seconds,
                ours,
                f"{1 / seconds:.2f} steps/s, compile {peer_first - seconds:.2f} s; ELBO {peer_elbo:.2f}",
            )
        )
    for jit, name in (
        (True, "Python loop over datapoints, each update jitted"),
        (False, "Python loop over datapoints, eager JAX"),
    ):
        per_datapoint = loop_seconds(data, vae, theta, sizes.loop_data, jit)
        rows.append(
            Row(
                "svi_step",
                workload,
                steady,
                first - steady,
                name,
                per_datapoint * n,
                ours,
                f"{1 / per_datapoint:,.0f} φ updates/s (timed on {sizes.loop_data}, scaled to N)",
            )
        )
    return rows


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=None, help=f"N (default {FULL.num_data})")
    parser.add_argument("--repeats", type=int, default=5, help="steps timed after the first; the median counts")
    parser.add_argument(
        "--loop-data", type=int, default=None, help=f"datapoints the loops are timed on (default {FULL.loop_data})"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = parser.parse_args(argv)
    rows = run(args.quick, args.repeats, args.num_data, args.loop_data)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()

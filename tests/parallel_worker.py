"""Runs in a subprocess with 4 simulated CPU devices (tests/test_parallel.py starts it): trains each
model on 1 and on 4 devices and prints, as JSON, how far apart the results are and how they were placed.

XLA fixes the number of CPU devices when the backend starts, which the pytest process has done long
before; hence a process of its own.
"""

import json
import os
import re
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lvmjax import amortized, app, distributed_em, parallel, svi, training
from lvmjax.models import gaussian_mixture


def max_difference(first, second) -> float:
    pairs = zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second), strict=True)
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in pairs)


def max_scale(tree) -> float:
    return max(float(np.max(np.abs(np.asarray(leaf)))) for leaf in jax.tree_util.tree_leaves(tree))


def fits(model: str) -> dict:
    config = app.FitConfig(model=model, epochs=2, hidden=(16,), latent_dim=3, batch_size=32, svi_inner_steps=2)
    dataset = app.load_data(config)
    one = app.fit(config, dataset)
    four = app.fit(config, dataset, mesh=parallel.data_mesh(4))
    leaves = zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(four.params), strict=True)
    shapes_equal = all(np.shape(a) == np.shape(b) for a, b in leaves)
    return {
        "difference": max_difference(one.params, four.params),
        "scale": max_scale(one.params),
        "shapes_equal": shapes_equal,
        "num_train": int(dataset.train.shape[0]),
        "objectives": [[entry["train_objective"] for entry in result.history] for result in (one, four)],
    }


def collectives(text: str) -> dict:
    """The shapes each kind of collective moves in a compiled program."""
    found = {}
    for kind in ("all-reduce", "all-gather", "all-to-all", "collective-permute"):
        found[kind] = re.findall(rf"= (.*?) {kind}(?:-start)?\(", text)
    return found


def svi_placement() -> dict:
    """Where the state of a data-parallel SVI epoch lives, and what its compiled program communicates."""
    mesh = parallel.data_mesh(4)
    num_data, batch_size = 1001, 64  # not a multiple of 4: φ is padded to 1004 rows
    data = jnp.asarray(np.random.default_rng(0).integers(0, 2, (num_data, 12)), jnp.float32)
    vae = amortized.make_vae(12, 3, hidden=(16,))
    theta = {"decoder": vae.init(jax.random.PRNGKey(0))["decoder"]}
    optimizer = optax.adam(1e-2)
    state = svi.init_svi(jax.random.PRNGKey(1), vae.family, theta, num_data, optimizer, optimizer)
    step = svi.make_svi_step(vae.model, vae.family, optimizer, optimizer, analytic_kl=True, inner_steps=2, mesh=mesh)
    epoch = jax.jit(training.make_epoch(step, batch_size, mesh))
    state = svi.shard_state(state, mesh)
    inputs = parallel.replicate((jnp.arange(num_data), data), mesh)
    new_state, _ = epoch(state, jax.random.PRNGKey(2), inputs)
    phi = jax.tree_util.tree_leaves(new_state.phi)[0]
    theta_leaf = jax.tree_util.tree_leaves(new_state.theta)[0]
    text = epoch.lower(state, jax.random.PRNGKey(2), inputs).compile().as_text()
    return {
        "phi_spec": str(phi.sharding.spec),
        "phi_rows_per_device": sorted({s.data.shape[0] for s in phi.addressable_shards}),
        "theta_replicated": bool(theta_leaf.sharding.is_fully_replicated),
        "collectives": collectives(text),
        "num_data": num_data,
        "batch_size": batch_size,
    }


def gmm(covariance: str) -> dict:
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(size=(333, 3)) + 5 * rng.normal(size=3) for _ in range(3)]).astype(np.float32)
    # tol=0: exactly max_iter iterations on both, whatever the last digits of the objective.
    one, one_info = gaussian_mixture.fit_em(jax.random.PRNGKey(0), data, 3, covariance, max_iter=8, tol=0.0)
    four, four_info = distributed_em.fit_em(
        jax.random.PRNGKey(0), data, 3, covariance, max_iter=8, tol=0.0, mesh=parallel.data_mesh(4)
    )
    return {
        "difference": max_difference(one, parallel.to_host(four)),
        "scale": max_scale(one),
        "iterations": [int(one_info.num_iterations), int(four_info.num_iterations)],
        "objective": [
            float(np.asarray(info.objective)[int(info.num_iterations) - 1])
            for info in (one_info, parallel.to_host(four_info))
        ],
    }


if __name__ == "__main__":
    results = {"devices": len(jax.devices())}
    for model in ("vae", "svi"):
        results[f"fit_{model}"] = fits(model)
    results["svi_placement"] = svi_placement()
    for covariance in ("full", "diag"):
        results[f"gmm_{covariance}"] = gmm(covariance)
    json.dump(results, sys.stdout)

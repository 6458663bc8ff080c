"""The batch programs the application layer shares, each compiled once per model and shape:
ancestral sampling, importance-weighted imputation, reconstruction and interpolation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lvmjax import amortized, applications
from lvmjax.model import LatentVariableModel, sample

__all__ = ["ancestral", "impute_vae_all", "interpolate_all", "reconstruct_all"]


@functools.partial(jax.jit, static_argnames=("model", "num", "means"))
def ancestral(key, model: LatentVariableModel, params, num: int, means: bool):
    """`num` draws z ~ p(z), x ~ p(x | z) (`lvmjax.sample`); with `means`, E[x | z] of z ~ p(z) instead of x."""

    def one(key):
        if means:  # x is never drawn
            return model.likelihood(params, model.prior(params).sample(seed=key)).mean()
        return sample(key, model, params)[1]

    return jax.vmap(one)(jax.random.split(key, num))


@functools.partial(jax.jit, static_argnames=("vae",))
def reconstruct_all(vae, params, data):
    """E[x | z = f(x)] for every row of `data` (`amortized.reconstruct`)."""
    return jax.vmap(lambda x: amortized.reconstruct(vae, params, x))(data)


@functools.partial(jax.jit, static_argnames=("vae", "num_steps"))
def interpolate_all(vae, params, starts, ends, num_steps: int):
    """The decoded straight paths from each code f(start) to f(end) (`amortized.interpolate`)."""
    return jax.vmap(lambda start, end: amortized.interpolate(vae, params, start, end, num_steps))(starts, ends)


@functools.partial(jax.jit, static_argnames=("vae", "num_samples"))
def impute_vae_all(key, vae, params, data, observed, num_samples: int):
    """`applications.impute_vae` of every row of `data` (one mask), key fold_in(key, row)."""

    def one(args):
        index, x = args
        return applications.impute_vae(jax.random.fold_in(key, index), vae, params, x, observed, num_samples)[1]

    # A batch size that divides N: lax.map compiles no second body for a remainder.
    batch_size = max(size for size in range(1, 33) if data.shape[0] % size == 0)
    return jax.lax.map(one, (jnp.arange(data.shape[0]), data), batch_size=batch_size)

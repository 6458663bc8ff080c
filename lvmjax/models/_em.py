"""The EM loop shared by the classical models: iterate a pure step inside `lax.while_loop`.

EM (Dempster, Laird & Rubin 1977) alternates an E-step, the posterior
p(z | x_i; θ_t) of every datapoint, and an M-step, θ_{t+1} = argmax_θ
Σ_i E_{p(z | x_i; θ_t)}[log p(x_i, z; θ)]. Each iteration never decreases the
log-likelihood Σ_i log p(x_i; θ) (or, with a prior on θ, the log-posterior).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
Array = jax.Array


class EMInfo(NamedTuple):
    """How an EM run went."""

    objective: Array  # shape=(max_iter,): mean objective per datapoint at θ_t, t = 0, 1, ...; NaN after the last
    num_iterations: Array  # shape=(), int32: the M-steps taken
    converged: Array  # shape=(), bool: the objective changed by less than tol in the last iteration


def run_em(step: Callable[[Params], tuple[Params, Array]], params: Params, max_iter: int,
           tol: float) -> tuple[Params, EMInfo]:
    """Iterates `params <- step(params)` until the objective changes by less than `tol`.

    Args:
      step: one EM iteration, `θ_t -> (θ_{t+1}, objective at θ_t)`, where the
        objective is the mean log-likelihood per datapoint (plus the log-prior
        per datapoint for MAP-EM), computed by the E-step.
      params: θ_0.
      max_iter: the most iterations (static).
      tol: stop once |objective(θ_t) - objective(θ_{t-1})| < tol.

    Returns:
      (θ after the last iteration, `EMInfo`).
    """
    dtype = jax.eval_shape(step, params)[1].dtype
    trace = jnp.full((max_iter,), jnp.nan, dtype)

    def not_done(carry):
        iteration, _, _, converged = carry
        return (iteration < max_iter) & ~converged

    def iterate(carry):
        iteration, params, trace, _ = carry
        new_params, objective = step(params)
        previous = jnp.where(iteration > 0, trace[jnp.maximum(iteration - 1, 0)], -jnp.inf)
        converged = jnp.abs(objective - previous) < tol
        return iteration + 1, new_params, trace.at[iteration].set(objective), converged

    start = (jnp.zeros((), jnp.int32), params, trace, jnp.zeros((), bool))
    iterations, params, trace, converged = jax.lax.while_loop(not_done, iterate, start)
    return params, EMInfo(trace, iterations, converged)

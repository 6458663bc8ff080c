"""The EM loops shared by every EM driver: one convergence rule, a jitted loop and a host loop.

EM (Dempster, Laird & Rubin 1977) alternates an E-step, the posterior
p(z | x_i; θ_t) of every datapoint, and an M-step, θ_{t+1} = argmax_θ
Σ_i E_{p(z | x_i; θ_t)}[log p(x_i, z; θ)]. Each iteration never decreases the
log-likelihood Σ_i log p(x_i; θ) (or, with a prior on θ, the log-posterior).

A driver writes one iteration as a step, θ_t -> (θ_{t+1}, objective at θ_t), and
iterates it by `run_em` (inside `lax.while_loop`, the whole fit one compiled
program) or by `run_em_on_host` (a Python loop over the step, for steps that
cannot run inside a `while_loop`: collectives over a device mesh, chunks streamed
from the host). Both stop by `converged` and return the same `EMInfo`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax.types import Array, Params

__all__ = ["EMInfo", "best_restart", "converged", "run_em", "run_em_on_host"]


class EMInfo(NamedTuple):
    """How an EM run went."""

    objective: Array  # shape=(max_iter,): mean objective per datapoint at θ_t, t = 0, 1, ...; NaN after the last
    num_iterations: Array  # shape=(), int32: the M-steps taken
    converged: Array  # shape=(), bool: the objective changed by less than tol in the last iteration


def converged(previous: Any, current: Any, tol: float | Array) -> Any:
    """The stopping rule of every EM loop: |objective(θ_t) - objective(θ_{t-1})| < tol.

    At the first iterate, t = 0, `previous` is -inf, and the rule never holds
    (|objective(θ_0) + inf| = inf; NaN never converges either). Works on jax and
    numpy arrays (elementwise, one flag per restart) and on Python floats alike.
    """
    return abs(current - previous) < tol


def run_em(
    step: Callable[[Params], tuple[Params, Array]], params: Params, max_iter: int, tol: float | Array
) -> tuple[Params, EMInfo]:
    """Iterates `params <- step(params)` inside `lax.while_loop` until `converged`.

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
        iteration, _, _, done = carry
        return (iteration < max_iter) & ~done

    def iterate(carry):
        iteration, params, trace, _ = carry
        new_params, objective = step(params)
        previous = jnp.where(iteration > 0, trace[jnp.maximum(iteration - 1, 0)], -jnp.inf)
        return iteration + 1, new_params, trace.at[iteration].set(objective), converged(previous, objective, tol)

    start = (jnp.zeros((), jnp.int32), params, trace, jnp.zeros((), bool))
    iterations, params, trace, done = jax.lax.while_loop(not_done, iterate, start)
    return params, EMInfo(trace, iterations, done)


def run_em_on_host(
    step: Callable[[Params], tuple[Params, Any]], params: Params, max_iter: int, tol: float | Array
) -> tuple[Params, EMInfo]:
    """`run_em` as a Python loop over `step`, for steps that cannot run inside `lax.while_loop`.

    The host decides convergence, once for all devices. The step may advance R
    restarts at once: an objective of shape (R,) (a leading axis R on every leaf
    of θ), each restart stopping by `converged` on its own, after which its θ is
    held while the others go on. The trace takes its dtype from the objective.

    Args:
      step: one EM iteration, `θ_t -> (θ_{t+1}, objective at θ_t)` (a compiled
        program, or a loop of them), the objective of shape () or (R,).
      params: θ_0.
      max_iter: the most iterations.
      tol: stop once |objective(θ_t) - objective(θ_{t-1})| < tol.

    Returns:
      (θ after the last iteration, `EMInfo`), with a leading axis R on θ and on
      every field of `EMInfo` when the objective has one.
    """
    new_params, first = step(params)  # the first iterate gives the objective's shape and dtype
    objective = np.asarray(first)
    trace = np.full((*objective.shape, max_iter), np.nan, objective.dtype)
    done, iterations = np.zeros(objective.shape, bool), np.zeros(objective.shape, np.int32)
    previous = np.full(objective.shape, -np.inf, objective.dtype)
    for iteration in range(max_iter):
        if iteration > 0:
            new_params, objective = step(params)
            objective = np.asarray(objective)
        active = ~done
        trace[..., iteration] = np.where(active, objective, np.nan)
        iterations = iterations + active
        done = done | (active & converged(previous, objective, tol))
        previous = objective
        params = _keep_stopped(active, new_params, params)
        if done.all():
            break
    return params, EMInfo(jnp.asarray(trace), jnp.asarray(iterations, jnp.int32), jnp.asarray(done))


def _keep_stopped(active: np.ndarray, new_params: Params, params: Params) -> Params:
    """θ_{t+1} of the restarts still running (`active`, shape () or (R,)), θ_t of those that stopped."""
    if active.all():
        return new_params
    mask = jnp.asarray(active)
    return jax.tree.map(
        lambda new, old: jnp.where(mask.reshape(*mask.shape, *[1] * (new.ndim - mask.ndim)), new, old),
        new_params,
        params,
    )


def best_restart(final_objective: Array, tree: Any) -> Any:
    """The restart with the highest finite objective at its final θ: every leaf of `tree` (with a leading
    axis R, one entry per restart) at that index. A restart whose objective is NaN or inf is never chosen
    over a finite one."""
    best = jnp.argmax(jnp.where(jnp.isfinite(final_objective), final_objective, -jnp.inf))
    return jax.tree.map(lambda leaf: leaf[best], tree)

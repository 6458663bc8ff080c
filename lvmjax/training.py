"""Gradient-based learning: one guarded ascent update, one `(init, step)` contract, and a scanned epoch.

An objective is a function of ONE datapoint, `objective(key, params, x)`, whose
value is to be MAXIMIZED (an ELBO, an IWAE bound, a log-likelihood). Every
learner of lvmjax (gradient ascent here, `svi.svi`) is a `Trainer`, an
`(init, step)` pair as blackjax's algorithms are:

    state = trainer.init(key, params)
    state, info = trainer.step(state, key, batch)

with the same info fields (`objective`, `grad_norm`, `skipped`), so one driver,
`make_epoch`, scans any of them. Every parameter update is `ascent_step`,
guarded by `apply_if_finite`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lvmjax import parallel
from lvmjax.errors import ArgumentError
from lvmjax.types import Array, Objective, Params

__all__ = [
    "ScheduledObjective",
    "StepInfo",
    "TrainState",
    "Trainer",
    "all_finite",
    "apply_if_finite",
    "ascent_step",
    "batch_objective",
    "descent_step",
    "gradient_ascent",
    "init_train_state",
    "make_epoch",
    "make_train_step",
    "minibatch_indices",
]


class TrainState(NamedTuple):
    params: Params  # pytree of θ (and φ for amortized models)
    opt_state: optax.OptState
    step: Array  # shape=(), int32: the steps applied


class StepInfo(NamedTuple):
    objective: Array  # shape=(): batch mean of the objective, at the parameters before the step
    grad_norm: Array  # shape=(): global norm of the gradient
    skipped: Array  # shape=(), bool: the step was not applied (non-finite objective or gradient)


class Trainer(NamedTuple):
    """A learning algorithm as a pair of pure functions (blackjax's top-level API).

    `init(key, params) -> state` makes the state from the initial parameters
    (the key draws whatever else the state holds, e.g. SVI's φ_1 … φ_N);
    `step(state, key, batch) -> (state, info)` takes one update on a minibatch.
    `make_epoch(trainer.step, batch_size)` scans the step over an epoch.
    """

    init: Callable[[Array, Params], Any]
    step: Callable[[Any, Array, Any], tuple[Any, Any]]


class ScheduledObjective(NamedTuple):
    """An objective that changes with the training step (a β warm-up, say): `at_step(step) -> objective`.

    `make_train_step` (and so `gradient_ascent`) calls `at_step(state.step)` inside the
    compiled step, with the step counter as a traced int32, so one program serves every
    step; `at_step` builds its objective from optax schedules of that step
    (`amortized.elbo_objective(beta=optax.linear_schedule(0.0, 1.0, 1000))`).
    """

    at_step: Callable[[Array], Objective]


def all_finite(tree: Any) -> Array:
    """True (a scalar bool array) if every floating-point entry of every leaf of `tree` is finite."""
    checks = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def apply_if_finite(finite: Array, update: Callable[[Any], Any], state: Any, enabled: bool = True) -> tuple[Any, Array]:
    """(`update(state)`, False) if `finite`, else (`state`, True): the guard of every training step.

    A step whose objective or gradient is NaN or infinite (which would make Adam's
    update NaN and poison every later step) leaves the parameters and the optimizer
    state exactly as they were, and says so. `jax.lax.cond` runs only the branch
    taken, so a finite step costs what it cost without the guard. With `enabled`
    False the update is applied unconditionally and nothing is reported skipped.
    """
    if not enabled:
        return update(state), jnp.asarray(False)
    return jax.lax.cond(finite, update, lambda unchanged: unchanged, state), ~finite


def ascent_step(
    optimizer: optax.GradientTransformation, grads: Params, opt_state: optax.OptState, params: Params
) -> tuple[Params, optax.OptState]:
    """One optax step UP the gradient `grads` of an objective to maximize:

        params ← params + optimizer(∇),   the optimizer receiving −∇ (optax minimizes)

    Args:
      optimizer: any optax optimizer.
      grads: ∇_params of the objective, a pytree like `params`.
      opt_state: the optimizer's state for `params`.
      params: the parameters before the step.

    Returns:
      (the new parameters, the new optimizer state). Vmap it for a batch of
      independent parameters (SVI's φ_i, each with its own optimizer state).
    """
    return descent_step(optimizer, jax.tree.map(jnp.negative, grads), opt_state, params)


def descent_step(
    optimizer: optax.GradientTransformation, loss_grads: Params, opt_state: optax.OptState, params: Params
) -> tuple[Params, optax.OptState]:
    """The one call of optax: params ← params + optimizer(loss_grads), `loss_grads` = −∇ of the objective.

    `ascent_step` negates and calls it; `make_train_step` negates before its guard and
    calls it inside (where the negation sits changes how XLA fuses the gradient's
    reductions on the CPU, and so the last bits of a long training run).
    """
    updates, opt_state = optimizer.update(loss_grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def init_train_state(params: Params, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def batch_objective(objective: Objective) -> Callable[[Params, Array, Array], Array]:
    """(params, key, batch) -> mean over the batch of objective(key_i, params, x_i)."""

    def mean_objective(params, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jnp.mean(jax.vmap(objective, in_axes=(0, None, 0))(keys, params, batch))

    return mean_objective


def make_train_step(
    objective: Objective | ScheduledObjective, optimizer: optax.GradientTransformation, skip_nonfinite: bool = True
) -> Callable[[TrainState, Array, Array], tuple[TrainState, StepInfo]]:
    """A pure `(state, key, batch) -> (state, StepInfo)` step that ascends the objective.

        params ← params + optimizer(∇_params (1/B) Σ_i objective(key_i, params, x_i))

    Args:
      objective: objective(key, params, x) for one datapoint, to maximize; or a
        `ScheduledObjective`, whose objective at `state.step` is ascended.
      optimizer: any optax optimizer (`ascent_step`: it receives the gradient of the negative).
      skip_nonfinite: a step whose objective or gradient is not finite changes
        nothing (`apply_if_finite`) and has `info.skipped` True; the step
        counter counts only the steps applied. False applies every step.

    Returns:
      The step; wrap it in `jax.jit`, or scan it with `make_epoch`.
    """

    def step(state, key, batch):
        current = objective.at_step(state.step) if isinstance(objective, ScheduledObjective) else objective
        mean_objective = batch_objective(current)
        value, grads = jax.value_and_grad(mean_objective)(state.params, key, batch)
        loss_grads = jax.tree.map(jnp.negative, grads)  # before the guard: see `descent_step`
        grad_norm = optax.tree.norm(loss_grads)

        def apply(state):
            return TrainState(*descent_step(optimizer, loss_grads, state.opt_state, state.params), state.step + 1)

        state, skipped = apply_if_finite(jnp.isfinite(value) & jnp.isfinite(grad_norm), apply, state, skip_nonfinite)
        return state, StepInfo(value, grad_norm, skipped)

    return step


def gradient_ascent(
    objective: Objective | ScheduledObjective, optimizer: optax.GradientTransformation, skip_nonfinite: bool = True
) -> Trainer:
    """Minibatch gradient ascent on an objective of one datapoint, as a `Trainer`.

        params ← params + optimizer(∇_params (1/B) Σ_i objective(key_i, params, x_i))

    `init(key, params)` is `init_train_state(params, optimizer)` (the key is
    unused); `step(state, key, batch)` is `make_train_step(objective, optimizer,
    skip_nonfinite)`, returning a `StepInfo`.
    """

    def init(key, params):
        del key
        return init_train_state(params, optimizer)

    return Trainer(init, make_train_step(objective, optimizer, skip_nonfinite))


def minibatch_indices(key: Array, num_data: int, batch_size: int) -> Array:
    """A random permutation of range(num_data) cut into full minibatches: (num_batches, batch_size).

    The last num_data mod batch_size datapoints of the permutation are left out
    of this epoch (a different few each epoch), so every step has the same shape.
    """
    num_batches = num_data // batch_size
    permutation = jax.random.permutation(key, num_data)
    return permutation[: num_batches * batch_size].reshape(num_batches, batch_size)


def make_epoch(
    step: Callable, batch_size: int, mesh: Mesh | None = None
) -> Callable[[Any, Array, Any], tuple[Any, Any]]:
    """One pass over the data as a `lax.scan` of `step` over shuffled minibatches.

    Args:
      step: `(state, key, batch) -> (state, info)`, e.g. a `Trainer`'s step.
      batch_size: B; must not exceed the number of datapoints.
      mesh: data-parallel over the devices of this `parallel.data_mesh`: every
        minibatch is split into B / n rows per device (B must be a multiple of n),
        and the batch-mean gradient becomes an all-reduce. Pass the state and the
        data replicated (`parallel.replicate`; for SVI, `svi.shard_state`). The
        minibatches and their keys do not depend on n, so the result is the
        one-device result up to the order of floating-point sums.

    Returns:
      `epoch(state, key, data) -> (state, info)`. `data` is an array of shape
      (N, ...) or a pytree of them (e.g. `(jnp.arange(N), x)` for steps that
      need the datapoints' indices); `batch` is the same pytree cut to B rows.
      Every field of `info` gains a leading axis, one entry per step. Jit it
      once; the data stays on the device.
    """
    parallel.check_batch_size(batch_size, mesh)

    def epoch(state, key, data):
        num_data = jax.tree.leaves(data)[0].shape[0]
        if batch_size > num_data:
            raise ArgumentError(f"batch_size={batch_size} is larger than the {num_data} datapoints.")
        key_order, key_steps = jax.random.split(key)
        indices = minibatch_indices(key_order, num_data, batch_size)
        keys = jax.random.split(key_steps, indices.shape[0])

        def body(state, inputs):
            batch_indices, step_key = inputs
            batch_indices = parallel.constrain(batch_indices, mesh)
            batch = jax.tree.map(lambda leaf: leaf[batch_indices], data)
            return step(state, step_key, batch)

        return jax.lax.scan(body, state, (indices, keys))

    return epoch

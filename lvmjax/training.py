"""Gradient-based training: a jit-compiled step for any objective and optimizer, and a scanned epoch.

An objective is a function of ONE datapoint, `objective(key, params, x)`, whose
value is to be MAXIMIZED (an ELBO, an IWAE bound, a log-likelihood). The step
minimizes the negative batch mean with an optax optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
Array = jax.Array
Objective = Callable[[Array, Params, Array], Array]


class TrainState(NamedTuple):
    params: Params  # pytree of θ (and φ for amortized models)
    opt_state: optax.OptState
    step: Array  # shape=(), int32


class StepMetrics(NamedTuple):
    objective: Array  # shape=(): batch mean of the objective
    grad_norm: Array  # shape=(): global norm of the gradient


def init_train_state(params: Params, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def batch_objective(objective: Objective) -> Callable[[Params, Array, Array], Array]:
    """(params, key, batch) -> mean over the batch of objective(key_i, params, x_i)."""

    def mean_objective(params, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jnp.mean(jax.vmap(objective, in_axes=(0, None, 0))(keys, params, batch))

    return mean_objective


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation
                    ) -> Callable[[TrainState, Array, Array], tuple[TrainState, StepMetrics]]:
    """A pure `(state, key, batch) -> (state, metrics)` step that ascends the objective.

        params ← params + optimizer(∇_params (1/B) Σ_i objective(key_i, params, x_i))

    Args:
      objective: objective(key, params, x) for one datapoint, to maximize.
      optimizer: any optax optimizer (it receives the gradient of the negative).

    Returns:
      The step; wrap it in `jax.jit`, or scan it with `make_epoch`.
    """
    mean_objective = batch_objective(objective)

    def step(state, key, batch):
        value, grads = jax.value_and_grad(mean_objective)(state.params, key, batch)
        grads = jax.tree_util.tree_map(jnp.negative, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), StepMetrics(value, optax.tree.norm(grads))

    return step


def minibatch_indices(key: Array, num_data: int, batch_size: int) -> Array:
    """A random permutation of range(num_data) cut into full minibatches: (num_batches, batch_size).

    The last num_data mod batch_size datapoints of the permutation are left out
    of this epoch (a different few each epoch), so every step has the same shape.
    """
    num_batches = num_data // batch_size
    permutation = jax.random.permutation(key, num_data)
    return permutation[: num_batches * batch_size].reshape(num_batches, batch_size)


def make_epoch(step: Callable, batch_size: int) -> Callable[[Any, Array, Any], tuple[Any, Any]]:
    """One pass over the data as a `lax.scan` of `step` over shuffled minibatches.

    Args:
      step: `(state, key, batch) -> (state, metrics)`.
      batch_size: B; must not exceed the number of datapoints.

    Returns:
      `epoch(state, key, data) -> (state, metrics)`. `data` is an array of shape
      (N, ...) or a pytree of them (e.g. `(jnp.arange(N), x)` for steps that
      need the datapoints' indices); `batch` is the same pytree cut to B rows.
      Every field of `metrics` gains a leading axis, one entry per step. Jit it
      once; the data stays on the device.
    """

    def epoch(state, key, data):
        num_data = jax.tree_util.tree_leaves(data)[0].shape[0]
        if batch_size > num_data:
            raise ValueError(f"batch_size={batch_size} is larger than the {num_data} datapoints.")
        key_order, key_steps = jax.random.split(key)
        indices = minibatch_indices(key_order, num_data, batch_size)
        keys = jax.random.split(key_steps, indices.shape[0])

        def body(state, inputs):
            batch_indices, step_key = inputs
            batch = jax.tree_util.tree_map(lambda leaf: leaf[batch_indices], data)
            return step(state, step_key, batch)

        return jax.lax.scan(body, state, (indices, keys))

    return epoch

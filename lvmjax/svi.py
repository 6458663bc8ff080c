"""Non-amortized stochastic variational inference: a variational distribution q(z; φ_i) per datapoint.

The seed text's algorithm (§4.1): each datapoint x_i has its own variational
parameters φ_i, and the objective is

    Σ_i ELBO(x_i; θ, φ_i),    ELBO(x; θ, φ) = E_{q(z; φ)}[log p(x, z; θ) - log q(z; φ)].

For a minibatch, (a) optimize the φ_i with θ fixed, then take one step on θ at
the optimized φ_i (schedule "inner"); or (b) step on θ and the φ_i together
(schedule "joint"). Here φ_1 … φ_N are ONE pytree with a leading axis N, their
optimizer states likewise; a step gathers the minibatch's rows, updates them
with a vmapped `training.ascent_step`, and scatters them back. No Python loop
runs over datapoints, and an epoch is one `lax.scan` (see `training.make_epoch`).
`svi(...)` is the algorithm as a `training.Trainer`. Refining an encoder's q
this way is in `semi_amortized`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lvmjax import parallel, training
from lvmjax.errors import ArgumentError
from lvmjax.estimators import elbo
from lvmjax.model import LatentVariableModel
from lvmjax.types import Array, Params
from lvmjax.variational import VariationalFamily

__all__ = [
    "LocalObjective",
    "SVIInfo",
    "SVIState",
    "fit_local",
    "init_svi",
    "make_local_update",
    "make_svi_step",
    "shard_state",
    "svi",
]

LocalObjective = Callable[[Array, Params, Params, Array], Array]
"""`local(key, θ, φ_i, x_i) -> ELBO(x_i; θ, φ_i)`: the objective of one datapoint and its own φ_i."""


class SVIState(NamedTuple):
    theta: Params  # model parameters θ
    theta_opt_state: optax.OptState
    phi: Params  # φ_1 … φ_N: every leaf has a leading axis N
    phi_opt_state: optax.OptState  # the optimizer state of each φ_i, leading axis N
    step: Array  # shape=(), int32: the steps applied


class SVIInfo(NamedTuple):
    objective: Array  # shape=(): minibatch mean of ELBO(x_i; θ, φ_i) at the θ before the step's θ update
    grad_norm: Array  # shape=(): global norm of the gradient of that mean in θ
    skipped: Array  # shape=(), bool: the step was not applied (non-finite ELBO, gradient or φ_i)
    inner_steps: Array  # shape=(), int32: φ updates taken in this step


def init_svi(
    key: Array,
    family: VariationalFamily,
    theta: Params,
    num_data: int,
    theta_optimizer: optax.GradientTransformation,
    phi_optimizer: optax.GradientTransformation,
) -> SVIState:
    """θ as given, φ_1 … φ_N from `family.init`, and fresh optimizer states."""
    phi = jax.vmap(family.init)(jax.random.split(key, num_data))
    return SVIState(
        theta, theta_optimizer.init(theta), phi, jax.vmap(phi_optimizer.init)(phi), jnp.zeros((), jnp.int32)
    )


def shard_state(state: SVIState, mesh: Mesh) -> SVIState:
    """`state` placed for data-parallel SVI over `mesh`: θ and its optimizer state on every device,
    φ_1 … φ_N and their optimizer states split along the datapoint axis.

    Where N is not a multiple of the number of devices n, φ gains copies of φ_1 up to
    the next multiple; no step touches them, and `state.phi[:N]` are the φ_i.
    """
    phi, phi_opt_state = parallel.shard(parallel.pad_to_multiple((state.phi, state.phi_opt_state), mesh.size), mesh)
    return SVIState(
        parallel.replicate(state.theta, mesh),
        parallel.replicate(state.theta_opt_state, mesh),
        phi,
        phi_opt_state,
        parallel.replicate(state.step, mesh),
    )


def _local_elbo(model, family, num_samples, analytic_kl) -> LocalObjective:
    """(key, θ, φ_i, x_i) -> ELBO(x_i; θ, φ_i), the Monte Carlo ELBO of `estimators.elbo`."""

    def local(key, theta, phi, x):
        return elbo(key, model, theta, family.distribution(phi), x, num_samples, analytic_kl=analytic_kl)

    return local


def _local_update(local: LocalObjective, optimizer: optax.GradientTransformation) -> Callable:
    """`make_local_update` for any local objective."""

    def update_one(key, theta, phi, opt_state, x):
        value, grads = jax.value_and_grad(local, argnums=2)(key, theta, phi, x)
        return *training.ascent_step(optimizer, grads, opt_state, phi), value

    def update(key, theta, phi, opt_state, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(update_one, in_axes=(0, None, 0, 0, 0))(keys, theta, phi, opt_state, batch)

    return update


def make_local_update(
    model: LatentVariableModel,
    family: VariationalFamily,
    optimizer: optax.GradientTransformation,
    num_samples: int = 1,
    analytic_kl: bool = False,
) -> Callable:
    """One optax step on every φ_i of a batch, θ fixed: `(key, θ, φ, opt_state, batch) -> (φ, opt_state, elbo)`.

        φ_i ← φ_i + optimizer(∇_{φ_i} ELBO(x_i; θ, φ_i))

    φ, opt_state and batch have a leading axis B; the update of φ_i uses only
    ∇_{φ_i} ELBO(x_i; θ, φ_i), and all B updates run as one vmapped step.
    """
    return _local_update(_local_elbo(model, family, num_samples, analytic_kl), optimizer)


def _gather(tree, indices):
    return jax.tree.map(lambda leaf: leaf[indices], tree)


def _scatter(tree, indices, rows):
    return jax.tree.map(lambda leaf, new: leaf.at[indices].set(new), tree, rows)


def _max_change(old, new):
    changes = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), old, new)
    return jnp.max(jnp.stack(jax.tree.leaves(changes)))


def make_svi_step(
    model: LatentVariableModel,
    family: VariationalFamily,
    theta_optimizer: optax.GradientTransformation,
    phi_optimizer: optax.GradientTransformation,
    num_samples: int = 1,
    analytic_kl: bool = False,
    schedule: Literal["inner", "joint"] = "inner",
    inner_steps: int = 10,
    inner_tolerance: float = 0.0,
    skip_nonfinite: bool = True,
    mesh: Mesh | None = None,
    local_objective: LocalObjective | None = None,
) -> Callable[[SVIState, Array, tuple[Array, Array]], tuple[SVIState, SVIInfo]]:
    """A pure SVI step `(state, key, (indices, batch)) -> (state, SVIInfo)`.

    Schedules (seed text, §4.1):
      "inner": up to `inner_steps` updates of the minibatch's φ_i with θ fixed,
        stopping early once no entry of φ moves by more than `inner_tolerance`;
        then one θ step on the minibatch mean ELBO at the updated φ_i.
      "joint": one step on θ (mean ELBO) and on each φ_i (its own ELBO) together:

        θ   ← θ + theta_optimizer(∇_θ (1/B) Σ_i ELBO(x_i; θ, φ_i))
        φ_i ← φ_i + phi_optimizer(∇_{φ_i} ELBO(x_i; θ, φ_i))

    Every update is a `training.ascent_step`.

    Args:
      model: any `LatentVariableModel`; θ is what its functions take as params.
      family: a `VariationalFamily` (reparameterizable for the default ELBO).
      theta_optimizer, phi_optimizer: optax optimizers.
      num_samples: K for each Monte Carlo ELBO.
      analytic_kl: use the closed-form KL(q ‖ p(z)).
      schedule: "inner" or "joint".
      inner_steps: the budget of φ updates per minibatch ("inner").
      inner_tolerance: convergence threshold on the largest change of φ ("inner").
      skip_nonfinite: a step whose ELBO, θ-gradient or minibatch φ_i come out NaN
        or infinite changes nothing and has `info.skipped` True
        (`training.apply_if_finite`).
      mesh: data-parallel over this `parallel.data_mesh`: the minibatch's φ_i are
        gathered from the devices that hold them (`shard_state`) into B / n rows
        per device, and the θ gradient is all-reduced. Use the same mesh in
        `training.make_epoch`.
      local_objective: `(key, θ, φ_i, x_i) -> ELBO_i` in place of the default
        `estimators.elbo(key, model, θ, family.distribution(φ_i), x_i,
        num_samples, analytic_kl=analytic_kl)` (e.g. an exact ELBO, or one of
        θ in other coordinates, as `mixture_vi`); `model`, `num_samples` and
        `analytic_kl` serve only the default.

    Returns:
      The step, for `jax.jit` or `training.make_epoch` (call the epoch with
      `data=(jnp.arange(N), x)`). The inner schedule draws its φ updates from
      the first of `jax.random.split(key)` and its θ step from the second; the
      joint schedule's one evaluation draws from `key` itself, datapoint i from
      `jax.random.split(key, B)[i]`.
    """
    if schedule not in ("inner", "joint"):
        raise ArgumentError(f"schedule must be 'inner' or 'joint', got {schedule!r}.")
    if inner_steps < 1:
        raise ArgumentError(f"inner_steps must be at least 1, got {inner_steps}.")
    local = local_objective if local_objective is not None else _local_elbo(model, family, num_samples, analytic_kl)
    local_update = _local_update(local, phi_optimizer)
    phi_ascent_step = jax.vmap(functools.partial(training.ascent_step, phi_optimizer))

    def batch_elbo(theta, phi, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(local, in_axes=(0, None, 0, 0))(keys, theta, phi, batch)

    def step(state, key, indexed_batch):
        indices, batch = indexed_batch
        phi, phi_opt_state = parallel.constrain(
            (_gather(state.phi, indices), _gather(state.phi_opt_state, indices)), mesh
        )

        if schedule == "inner":
            key_phi, key_theta = jax.random.split(key)

            def not_done(carry):
                count, _, _, change = carry
                return (count < inner_steps) & (change > inner_tolerance)

            def inner(carry):
                count, phi, opt_state, _ = carry
                new_phi, opt_state, _ = local_update(
                    jax.random.fold_in(key_phi, count), state.theta, phi, opt_state, batch
                )
                return count + 1, new_phi, opt_state, _max_change(phi, new_phi)

            infinity = jnp.full((), jnp.inf, jax.tree.leaves(phi)[0].dtype)
            start = (jnp.zeros((), jnp.int32), phi, phi_opt_state, infinity)
            count, phi, phi_opt_state, _ = jax.lax.while_loop(not_done, inner, start)
            value, theta_grads = jax.value_and_grad(lambda theta: jnp.mean(batch_elbo(theta, phi, key_theta, batch)))(
                state.theta
            )
        else:
            count = jnp.ones((), jnp.int32)
            elbos, vjp = jax.vjp(lambda theta, phi: batch_elbo(theta, phi, key, batch), state.theta, phi)
            # θ ascends the mean ELBO; each φ_i ascends its own ELBO_i.
            theta_grads, phi_grads = vjp(jnp.ones_like(elbos))
            theta_grads = jax.tree.map(lambda g: g / batch.shape[0], theta_grads)
            phi, phi_opt_state = phi_ascent_step(phi_grads, phi_opt_state, phi)
            value = jnp.mean(elbos)

        def apply(state):
            theta, theta_opt_state = training.ascent_step(
                theta_optimizer, theta_grads, state.theta_opt_state, state.theta
            )
            return SVIState(
                theta,
                theta_opt_state,
                _scatter(state.phi, indices, phi),
                _scatter(state.phi_opt_state, indices, phi_opt_state),
                state.step + 1,
            )

        finite = jnp.isfinite(value) & training.all_finite((theta_grads, phi, phi_opt_state))
        state, skipped = training.apply_if_finite(finite, apply, state, skip_nonfinite)
        return state, SVIInfo(value, optax.tree.norm(theta_grads), skipped, count)

    return step


def svi(
    model: LatentVariableModel,
    family: VariationalFamily,
    theta_optimizer: optax.GradientTransformation,
    phi_optimizer: optax.GradientTransformation,
    num_data: int,
    num_samples: int = 1,
    analytic_kl: bool = False,
    schedule: Literal["inner", "joint"] = "inner",
    inner_steps: int = 10,
    inner_tolerance: float = 0.0,
    skip_nonfinite: bool = True,
    mesh: Mesh | None = None,
    local_objective: LocalObjective | None = None,
) -> training.Trainer:
    """Non-amortized SVI on N datapoints as a `training.Trainer`: ascent of Σ_i ELBO(x_i; θ, φ_i) in θ and φ_1 … φ_N.

    `init(key, θ)` is `init_svi(key, family, θ, num_data, theta_optimizer,
    phi_optimizer)`: φ_1 … φ_N drawn from `family.init` with the key.
    `step(state, key, (indices, batch))` is `make_svi_step` with the same
    options (see there), returning an `SVIInfo`; scan it with
    `training.make_epoch` over `data=(jnp.arange(N), x)`.
    """

    def init(key, theta):
        return init_svi(key, family, theta, num_data, theta_optimizer, phi_optimizer)

    step = make_svi_step(
        model,
        family,
        theta_optimizer,
        phi_optimizer,
        num_samples,
        analytic_kl,
        schedule,
        inner_steps,
        inner_tolerance,
        skip_nonfinite,
        mesh,
        local_objective,
    )
    return training.Trainer(init, step)


def fit_local(
    key: Array,
    model: LatentVariableModel,
    family: VariationalFamily,
    theta: Params,
    data: Array,
    phi: Params,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    num_samples: int = 1,
    analytic_kl: bool = False,
    return_trace: bool = False,
) -> Params | tuple[Params, Array]:
    """Optimize φ_1 … φ_N for N datapoints with θ fixed: `num_steps` vmapped optax steps.

    Used to infer q(z | x_i) for datapoints that SVI never saw (a test set), and
    by `semi_amortized.refine`. Returns the optimized φ, leading axis N; with `return_trace`,
    also the trace of the optimization, shape (num_steps, N): the Monte Carlo
    ELBO(x_i; θ, φ_i) (K = `num_samples`) that step t estimated at the φ_i it
    started from, so that its mean over i shows the climb in one compiled run.
    """
    update = make_local_update(model, family, optimizer, num_samples, analytic_kl)

    def body(carry, step_key):
        phi, opt_state = carry
        phi, opt_state, elbos = update(step_key, theta, phi, opt_state, data)
        return (phi, opt_state), elbos if return_trace else None

    (phi, _), trace = jax.lax.scan(body, (phi, jax.vmap(optimizer.init)(phi)), jax.random.split(key, num_steps))
    return (phi, trace) if return_trace else phi

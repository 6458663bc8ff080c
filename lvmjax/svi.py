"""Non-amortized stochastic variational inference, semi-amortized refinement and the amortization gap.

The seed text's algorithm (§4.1): each datapoint x_i has its own variational
parameters φ_i, and the objective is

    Σ_i ELBO(x_i; θ, φ_i),    ELBO(x; θ, φ) = E_{q(z; φ)}[log p(x, z; θ) - log q(z; φ)].

For a minibatch, (a) optimize the φ_i with θ fixed, then take one step on θ at
the optimized φ_i (schedule "inner"); or (b) step on θ and the φ_i together
(schedule "joint"). Here φ_1 … φ_N are ONE pytree with a leading axis N, their
optimizer states likewise; a step gathers the minibatch's rows, updates them
with a vmapped optax step, and scatters them back. No Python loop runs over
datapoints, and an epoch is one `lax.scan` (see `training.make_epoch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lvmjax import parallel, training
from lvmjax.estimators import elbo, log_marginal_is
from lvmjax.model import LatentVariableModel
from lvmjax.variational import VariationalFamily

Params = Any
Array = jax.Array


class SVIState(NamedTuple):
    theta: Params  # model parameters θ
    theta_opt_state: optax.OptState
    phi: Params  # φ_1 … φ_N: every leaf has a leading axis N
    phi_opt_state: optax.OptState  # the optimizer state of each φ_i, leading axis N
    step: Array  # shape=(), int32


class SVIMetrics(NamedTuple):
    elbo: Array  # shape=(): minibatch mean of ELBO(x_i; θ, φ_i) at the θ before the step's θ update
    inner_steps: Array  # shape=(): φ updates taken in this step
    skipped: Array  # shape=(), bool: the step was not applied (non-finite ELBO, gradient or φ_i)


def init_svi(key: Array, family: VariationalFamily, theta: Params, num_data: int,
             theta_optimizer: optax.GradientTransformation,
             phi_optimizer: optax.GradientTransformation) -> SVIState:
    """θ as given, φ_1 … φ_N from `family.init`, and fresh optimizer states."""
    phi = jax.vmap(family.init)(jax.random.split(key, num_data))
    return SVIState(theta, theta_optimizer.init(theta), phi, jax.vmap(phi_optimizer.init)(phi),
                    jnp.zeros((), jnp.int32))


def shard_state(state: SVIState, mesh: Mesh) -> SVIState:
    """`state` placed for data-parallel SVI over `mesh`: θ and its optimizer state on every device,
    φ_1 … φ_N and their optimizer states split along the datapoint axis.

    Where N is not a multiple of the number of devices n, φ gains copies of φ_1 up to
    the next multiple; no step touches them, and `state.phi[:N]` are the φ_i.
    """
    rows = parallel.pad_to_multiple((state.phi, state.phi_opt_state), mesh.size)
    return SVIState(parallel.replicate(state.theta, mesh), parallel.replicate(state.theta_opt_state, mesh),
                    *parallel.shard(rows, mesh), parallel.replicate(state.step, mesh))


def _local_elbo(model, family, num_samples, analytic_kl):
    """(key, θ, φ_i, x_i) -> ELBO(x_i; θ, φ_i)."""

    def local(key, theta, phi, x):
        return elbo(key, model, theta, family.distribution(phi), x, num_samples, analytic_kl=analytic_kl)

    return local


def make_local_update(model: LatentVariableModel, family: VariationalFamily,
                      optimizer: optax.GradientTransformation, num_samples: int = 1,
                      analytic_kl: bool = False) -> Callable:
    """One optax step on every φ_i of a batch, θ fixed: `(key, θ, φ, opt_state, batch) -> (φ, opt_state, elbo)`.

    φ, opt_state and batch have a leading axis B; the update of φ_i uses only
    ∇_{φ_i} ELBO(x_i; θ, φ_i), and all B updates run as one vmapped step.
    """
    local = _local_elbo(model, family, num_samples, analytic_kl)

    def update_one(key, theta, phi, opt_state, x):
        value, grads = jax.value_and_grad(local, argnums=2)(key, theta, phi, x)
        updates, opt_state = optimizer.update(jax.tree_util.tree_map(jnp.negative, grads), opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, value

    def update(key, theta, phi, opt_state, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(update_one, in_axes=(0, None, 0, 0, 0))(keys, theta, phi, opt_state, batch)

    return update


def _gather(tree, indices):
    return jax.tree_util.tree_map(lambda leaf: leaf[indices], tree)


def _scatter(tree, indices, rows):
    return jax.tree_util.tree_map(lambda leaf, new: leaf.at[indices].set(new), tree, rows)


def _max_change(old, new):
    changes = jax.tree_util.tree_map(lambda a, b: jnp.max(jnp.abs(a - b)), old, new)
    return jnp.max(jnp.stack(jax.tree_util.tree_leaves(changes)))


def make_svi_step(model: LatentVariableModel, family: VariationalFamily,
                  theta_optimizer: optax.GradientTransformation,
                  phi_optimizer: optax.GradientTransformation, num_samples: int = 1,
                  analytic_kl: bool = False, schedule: Literal["inner", "joint"] = "inner",
                  inner_steps: int = 10, inner_tolerance: float = 0.0, skip_nonfinite: bool = True,
                  mesh: Mesh | None = None) -> Callable:
    """A pure SVI step `(state, key, (indices, batch)) -> (state, SVIMetrics)`.

    Schedules (seed text, §4.1):
      "inner": up to `inner_steps` updates of the minibatch's φ_i with θ fixed,
        stopping early once no entry of φ moves by more than `inner_tolerance`;
        then one θ step on the minibatch mean ELBO at the updated φ_i.
      "joint": one step on θ (mean ELBO) and on each φ_i (its own ELBO) together.

    Args:
      model: any `LatentVariableModel`; θ is what its functions take as params.
      family: a reparameterizable `VariationalFamily`.
      theta_optimizer, phi_optimizer: optax optimizers.
      num_samples: K for each Monte Carlo ELBO.
      analytic_kl: use the closed-form KL(q ‖ p(z)).
      schedule: "inner" or "joint".
      inner_steps: the budget of φ updates per minibatch ("inner").
      inner_tolerance: convergence threshold on the largest change of φ ("inner").
      skip_nonfinite: a step whose ELBO, θ-gradient or minibatch φ_i come out NaN
        or infinite changes nothing and has `metrics.skipped` True
        (`training.apply_if_finite`).
      mesh: data-parallel over this `parallel.data_mesh`: the minibatch's φ_i are
        gathered from the devices that hold them (`shard_state`) into B / n rows
        per device, and the θ gradient is all-reduced. Use the same mesh in
        `training.make_epoch`.

    Returns:
      The step, for `jax.jit` or `training.make_epoch` (call the epoch with
      `data=(jnp.arange(N), x)`).
    """
    if schedule not in ("inner", "joint"):
        raise ValueError(f"schedule must be 'inner' or 'joint', got {schedule!r}.")
    if inner_steps < 1:
        raise ValueError(f"inner_steps must be at least 1, got {inner_steps}.")
    local = _local_elbo(model, family, num_samples, analytic_kl)
    local_update = make_local_update(model, family, phi_optimizer, num_samples, analytic_kl)

    def batch_elbo(theta, phi, key, batch):
        keys = jax.random.split(key, batch.shape[0])
        return jax.vmap(local, in_axes=(0, None, 0, 0))(keys, theta, phi, batch)

    def step(state, key, indexed_batch):
        indices, batch = indexed_batch
        phi, phi_opt_state = parallel.constrain((_gather(state.phi, indices), _gather(state.phi_opt_state, indices)),
                                                mesh)
        key_phi, key_theta = jax.random.split(key)

        if schedule == "inner":
            def not_done(carry):
                count, _, _, change = carry
                return (count < inner_steps) & (change > inner_tolerance)

            def inner(carry):
                count, phi, opt_state, _ = carry
                new_phi, opt_state, _ = local_update(jax.random.fold_in(key_phi, count), state.theta, phi,
                                                     opt_state, batch)
                return count + 1, new_phi, opt_state, _max_change(phi, new_phi)

            infinity = jnp.full((), jnp.inf, jax.tree_util.tree_leaves(phi)[0].dtype)
            start = (jnp.zeros((), jnp.int32), phi, phi_opt_state, infinity)
            count, phi, phi_opt_state, _ = jax.lax.while_loop(not_done, inner, start)
            value, theta_grads = jax.value_and_grad(
                lambda theta: jnp.mean(batch_elbo(theta, phi, key_theta, batch)))(state.theta)
        else:
            count = jnp.ones((), jnp.int32)
            elbos, vjp = jax.vjp(lambda theta, phi: batch_elbo(theta, phi, key_theta, batch), state.theta, phi)
            # θ ascends the mean ELBO; each φ_i ascends its own ELBO_i.
            theta_grads, phi_grads = vjp(jnp.ones_like(elbos))
            theta_grads = jax.tree_util.tree_map(lambda g: g / batch.shape[0], theta_grads)
            phi_updates, phi_opt_state = jax.vmap(phi_optimizer.update)(
                jax.tree_util.tree_map(jnp.negative, phi_grads), phi_opt_state, phi)
            phi = optax.apply_updates(phi, phi_updates)
            value = jnp.mean(elbos)

        def apply(state):
            updates, theta_opt_state = theta_optimizer.update(
                jax.tree_util.tree_map(jnp.negative, theta_grads), state.theta_opt_state, state.theta)
            return SVIState(optax.apply_updates(state.theta, updates), theta_opt_state,
                            _scatter(state.phi, indices, phi), _scatter(state.phi_opt_state, indices, phi_opt_state),
                            state.step + 1)

        finite = jnp.isfinite(value) & training.all_finite((theta_grads, phi, phi_opt_state))
        state, skipped = training.apply_if_finite(finite, apply, state, skip_nonfinite)
        return state, SVIMetrics(value, count, skipped)

    return step


def fit_local(key: Array, model: LatentVariableModel, family: VariationalFamily, theta: Params,
              data: Array, phi: Params, optimizer: optax.GradientTransformation, num_steps: int,
              num_samples: int = 1, analytic_kl: bool = False,
              return_trace: bool = False) -> Params | tuple[Params, Array]:
    """Optimize φ_1 … φ_N for N datapoints with θ fixed: `num_steps` vmapped optax steps.

    Used to infer q(z | x_i) for datapoints that SVI never saw (a test set), and
    by `refine`. Returns the optimized φ, leading axis N; with `return_trace`,
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


def refine(key: Array, amortized, params: Params, data: Array, num_steps: int,
           optimizer: optax.GradientTransformation | None = None, num_samples: int = 1,
           return_trace: bool = False) -> Params | tuple[Params, Array]:
    """Semi-amortized inference (Kim et al. 2018): start each φ_i at the encoder's φ(x_i), then SVI.

    Args:
      key: PRNG key.
      amortized: an `amortized.AmortizedModel`.
      params: its trained parameters.
      data: (N, D).
      num_steps: SVI steps on every φ_i, θ fixed.
      optimizer: for φ; default Adam with learning rate 1e-2.
      num_samples: K of the ELBO's gradient estimates.
      return_trace: also return the ELBO estimates of every step, as `fit_local`.

    Returns:
      The refined φ, leading axis N (and, with `return_trace`, the (num_steps, N) trace).
    """
    optimizer = optimizer if optimizer is not None else optax.adam(1e-2)
    phi = jax.vmap(amortized.encoder_output, in_axes=(None, 0))(params, data)
    return fit_local(key, amortized.model, amortized.family, params, data, phi, optimizer, num_steps,
                     num_samples, analytic_kl=True, return_trace=return_trace)


class GapReport(NamedTuple):
    """log p(x) - ELBO_amortized = approximation gap + amortization gap (Cremer et al. 2018), per datapoint."""

    log_marginal: Array  # shape=(N,): importance-sampled log p(x), proposal the refined q
    log_marginal_stderr: Array  # shape=(N,)
    amortized_elbo: Array  # shape=(N,): ELBO of the encoder's q(z | x)
    refined_elbo: Array  # shape=(N,): ELBO of the refined q*(z | x), never below amortized_elbo
    approximation_gap: Array  # shape=(N,): log p(x) - refined ELBO
    amortization_gap: Array  # shape=(N,): refined ELBO - amortized ELBO


def amortization_gap(key: Array, amortized, params: Params, data: Array, refine_steps: int = 200,
                     elbo_samples: int = 100, marginal_samples: int = 5000, chunk_size: int | None = 500,
                     batch_size: int = 64) -> GapReport:
    """Splits the inference gap of a trained amortized model on N datapoints.

        log p(x) - ELBO(q_φ(x)) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_φ(x))]
                                =  approximation gap    +  amortization gap

    q* is the best member of the family for x, found by `refine` from the
    encoder's output; a datapoint whose refined ELBO does not beat the
    encoder's keeps the encoder's q, so ELBO(q*) >= ELBO(q_φ(x)). The two ELBOs of
    datapoint i use the same `elbo_samples` draws (analytic KL), from fold_in(key, i),
    independent across datapoints; log p(x) is importance-sampled with
    `marginal_samples` draws from q*, `batch_size` datapoints at a time.
    """
    key_refine, key_elbo, key_marginal = jax.random.split(key, 3)
    model, family = amortized.model, amortized.family
    initial = jax.vmap(amortized.encoder_output, in_axes=(None, 0))(params, data)
    refined = refine(key_refine, amortized, params, data, refine_steps)

    def elbo_of(args):
        # Datapoint i's draws come from fold_in(key, i): shared by its two ELBOs, so that their
        # difference is not noise, and independent across datapoints, so that the mean over
        # the N datapoints averages the Monte Carlo error away.
        index, phi, x = args
        return elbo(jax.random.fold_in(key_elbo, index), model, params, family.distribution(phi), x, elbo_samples,
                    analytic_kl=True)

    indices = jnp.arange(data.shape[0])
    amortized_elbo = jax.lax.map(elbo_of, (indices, initial, data), batch_size=batch_size)
    refined_elbo = jax.lax.map(elbo_of, (indices, refined, data), batch_size=batch_size)
    better = refined_elbo >= amortized_elbo
    best = jax.tree_util.tree_map(
        lambda new, old: jnp.where(better.reshape(-1, *[1] * (new.ndim - 1)), new, old), refined, initial)
    refined_elbo = jnp.maximum(refined_elbo, amortized_elbo)

    def marginal(args):
        index, phi, x = args
        return log_marginal_is(jax.random.fold_in(key_marginal, index), model, params,
                               family.distribution(phi), x, marginal_samples, chunk_size=chunk_size)

    estimate = jax.lax.map(marginal, (jnp.arange(data.shape[0]), best, data), batch_size=batch_size)
    return GapReport(estimate.log_marginal, estimate.stderr, amortized_elbo, refined_elbo,
                     estimate.log_marginal - refined_elbo, refined_elbo - amortized_elbo)

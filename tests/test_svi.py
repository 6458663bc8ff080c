"""Non-amortized SVI: φ_i converge to the exact posterior; both schedules learn; a non-finite step is skipped."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import make_linear_gaussian

import lvmjax
from lvmjax import svi, training
from lvmjax.models import linear_gaussian
from lvmjax.variational import full_rank_gaussian, mean_field_gaussian

pytestmark = pytest.mark.standard_promotion
NUM_DATA = 48


@pytest.fixture(scope="module")
def problem():
    params, _ = make_linear_gaussian(data_dim=5, latent_dim=2, noise=0.5)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(NUM_DATA, 2))
    noise = rng.normal(size=(NUM_DATA, 5)) * np.sqrt(np.asarray(params.noise_variance))
    data = jnp.asarray(z @ np.asarray(params.weight).T + np.asarray(params.bias) + noise, jnp.float32)
    return params, data


def moments(distribution):
    return distribution.mean(), distribution.covariance()


def run_svi(params, data, family, schedule, epochs, theta_optimizer, seed=0):
    # A decaying step size makes the noisy φ iterates settle at the optimum.
    phi_optimizer = optax.adam(optax.exponential_decay(0.1, 20 * epochs, 0.01), b2=0.99)
    step = svi.make_svi_step(
        linear_gaussian.model, family, theta_optimizer, phi_optimizer, num_samples=64, schedule=schedule, inner_steps=20
    )
    key_init, key_epochs = jax.random.split(jax.random.PRNGKey(seed))
    state = svi.init_svi(key_init, family, params, NUM_DATA, theta_optimizer, phi_optimizer)
    epoch = jax.jit(training.make_epoch(step, 16))
    history = []
    for key in jax.random.split(key_epochs, epochs):
        state, info = epoch(state, key, (jnp.arange(NUM_DATA), data))
        history.append(float(info.objective.mean()))
    return state, history


def test_svi_phi_converge_to_the_exact_posterior_full_rank(problem):
    """With θ fixed and a full-rank family, the optimal q(z; φ_i) IS p(z | x_i)."""
    params, data = problem
    family = full_rank_gaussian(2)
    state, _ = run_svi(params, data, family, "inner", 25, optax.set_to_zero())
    posterior_mean, posterior_covariance = jax.vmap(lambda x: moments(linear_gaussian.posterior(params, x)))(data)
    q_mean, q_covariance = jax.vmap(lambda phi: moments(family.distribution(phi)))(state.phi)
    np.testing.assert_allclose(q_mean, posterior_mean, atol=0.03)
    np.testing.assert_allclose(q_covariance, posterior_covariance, atol=0.015)
    # and θ was left alone
    np.testing.assert_array_equal(state.theta.weight, params.weight)


def test_svi_mean_field_finds_the_mean_field_optimum(problem):
    """The best diagonal Gaussian has the exact posterior mean and variances 1 / Λ_jj (Λ the precision)."""
    params, data = problem
    family = mean_field_gaussian(2)
    state, _ = run_svi(params, data, family, "inner", 25, optax.set_to_zero())
    posterior = linear_gaussian.posterior(params, data[0])
    mean_field_variance = 1.0 / jnp.diag(jnp.linalg.inv(posterior.covariance()))
    q_mean, q_covariance = jax.vmap(lambda phi: moments(family.distribution(phi)))(state.phi)
    posterior_mean = jax.vmap(lambda x: linear_gaussian.posterior(params, x).mean())(data)
    np.testing.assert_allclose(q_mean, posterior_mean, atol=0.03)
    q_variance = jnp.diagonal(q_covariance, axis1=1, axis2=2)
    np.testing.assert_allclose(q_variance, jnp.broadcast_to(mean_field_variance, (NUM_DATA, 2)), rtol=0.05)


@pytest.mark.parametrize("schedule", ["inner", "joint"])
def test_both_schedules_learn_theta(problem, schedule):
    params, data = problem
    start = params._replace(weight=0.3 * params.weight, bias=jnp.zeros_like(params.bias))
    state, history = run_svi(start, data, mean_field_gaussian(2), schedule, 30, optax.adam(3e-2))
    assert history[-1] > history[0] + 1.0, history
    exact_before = jnp.mean(jax.vmap(lambda x: linear_gaussian.log_marginal(start, x))(data))
    exact_after = jnp.mean(jax.vmap(lambda x: linear_gaussian.log_marginal(state.theta, x))(data))
    assert exact_after > exact_before + 1.0


def test_the_step_touches_only_the_minibatch(problem):
    params, data = problem
    family = mean_field_gaussian(2)
    optimizer = optax.adam(1e-2)
    step = jax.jit(svi.make_svi_step(linear_gaussian.model, family, optimizer, optimizer, inner_steps=3))
    state = svi.init_svi(jax.random.PRNGKey(0), family, params, NUM_DATA, optimizer, optimizer)
    indices = jnp.array([3, 7, 11])
    new, info = step(state, jax.random.PRNGKey(1), (indices, data[indices]))
    moved = np.any(np.asarray(new.phi["mean"] != state.phi["mean"]), axis=1)
    np.testing.assert_array_equal(np.flatnonzero(moved), indices)
    assert int(info.inner_steps) == 3


def test_inner_loop_stops_at_the_tolerance(problem):
    params, data = problem
    family = mean_field_gaussian(2)
    optimizer = optax.sgd(1e-6)  # moves φ by far less than the tolerance
    step = jax.jit(
        svi.make_svi_step(linear_gaussian.model, family, optimizer, optimizer, inner_steps=50, inner_tolerance=1e-3)
    )
    state = svi.init_svi(jax.random.PRNGKey(0), family, params, NUM_DATA, optimizer, optimizer)
    _, info = step(state, jax.random.PRNGKey(1), (jnp.arange(4), data[:4]))
    assert int(info.inner_steps) == 1


@pytest.mark.parametrize("family", [mean_field_gaussian(2), full_rank_gaussian(2)], ids=["mean_field", "full_rank"])
def test_a_jitted_local_update_returns_the_types_it_takes(problem, family):
    """φ from `family.init` has the exact types the update returns (no weak types), so a jitted
    update fed its own output is not traced, nor compiled, a second time."""
    params, data = problem
    optimizer = optax.adam(1e-2)
    phi = jax.vmap(family.init)(jax.random.split(jax.random.PRNGKey(0), NUM_DATA))
    opt_state = jax.vmap(optimizer.init)(phi)
    # chex counts the traces of the function it wraps (inside jit), keyed by where it is wrapped: the
    # parametrizations share that place, so the count starts afresh. jax.eval_shape traces through jit's
    # cache, as a call does, without compiling.
    chex.clear_trace_counter()
    update = jax.jit(chex.assert_max_traces(svi.make_local_update(linear_gaussian.model, family, optimizer), n=1))
    new_phi, new_opt_state, _ = jax.eval_shape(update, jax.random.PRNGKey(1), params, phi, opt_state, data)
    jax.eval_shape(update, jax.random.PRNGKey(2), params, new_phi, new_opt_state, data)  # a second trace raises

    def types(tree):
        return jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype, jax.typeof(leaf).weak_type), tree)

    assert types(new_phi) == types(phi) and types(new_opt_state) == types(opt_state)


def test_a_non_finite_svi_step_changes_nothing_and_says_so(problem):
    params, data = problem
    family = mean_field_gaussian(2)
    theta_optimizer, phi_optimizer = optax.adam(1e-2), optax.adam(1e-1)
    step = jax.jit(svi.make_svi_step(linear_gaussian.model, family, theta_optimizer, phi_optimizer, inner_steps=2))
    state = svi.init_svi(jax.random.PRNGKey(0), family, params, NUM_DATA, theta_optimizer, phi_optimizer)
    indices = jnp.arange(4)
    poisoned = data[:4].at[1, 2].set(jnp.inf)
    after, info = step(state, jax.random.PRNGKey(1), (indices, poisoned))
    assert bool(info.skipped)
    for left, right in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
    after, info = step(state, jax.random.PRNGKey(1), (indices, data[:4]))
    assert not bool(info.skipped) and int(after.step) == 1


def test_svi_is_init_svi_and_make_svi_step(problem):
    params, data = problem
    family = mean_field_gaussian(2)
    theta_optimizer, phi_optimizer = optax.adam(1e-2), optax.adam(1e-1)
    trainer = svi.svi(linear_gaussian.model, family, theta_optimizer, phi_optimizer, NUM_DATA, 4, inner_steps=3)
    state = trainer.init(jax.random.key(0), params)
    want_state = svi.init_svi(jax.random.key(0), family, params, NUM_DATA, theta_optimizer, phi_optimizer)
    step = svi.make_svi_step(linear_gaussian.model, family, theta_optimizer, phi_optimizer, 4, inner_steps=3)
    indices = jnp.array([5, 0, 9, 30])
    got = jax.jit(trainer.step)(state, jax.random.key(1), (indices, data[indices]))
    want = jax.jit(step)(want_state, jax.random.key(1), (indices, data[indices]))
    for left, right in zip(jax.tree.leaves((state, got)), jax.tree.leaves((want_state, want)), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_the_joint_step_reports_the_minibatch_elbo_and_its_theta_gradient(problem):
    """info.objective = (1/B) Σ_i ELBO(x_i; θ, φ_i) and info.grad_norm = ‖∇_θ of it‖, at the state before
    the step, datapoint i's draws from jax.random.split(key, B)[i]."""
    params, data = problem
    family = mean_field_gaussian(2)
    optimizer = optax.adam(1e-2)
    state = svi.init_svi(jax.random.key(0), family, params, NUM_DATA, optimizer, optimizer)
    step = jax.jit(
        svi.make_svi_step(linear_gaussian.model, family, optimizer, optimizer, num_samples=3, schedule="joint")
    )
    indices = jnp.array([2, 4, 8, 16])
    _, info = step(state, jax.random.key(1), (indices, data[indices]))
    phi = jax.tree.map(lambda leaf: leaf[indices], state.phi)

    def mean_elbo(theta):
        elbos = jax.vmap(
            lambda key, phi_i, x: lvmjax.elbo(key, linear_gaussian.model, theta, family.distribution(phi_i), x, 3)
        )(jax.random.split(jax.random.key(1), 4), phi, data[indices])
        return jnp.mean(elbos)

    value, grads = jax.jit(jax.value_and_grad(mean_elbo))(params)
    np.testing.assert_allclose(info.objective, value, rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, optax.tree.norm(grads), rtol=1e-5)
    assert int(info.inner_steps) == 1 and not bool(info.skipped)

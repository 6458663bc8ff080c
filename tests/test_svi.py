"""Non-amortized SVI: φ_i converge to the exact posterior; both schedules learn; refinement never hurts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make_linear_gaussian

import lvmjax
from lvmjax import amortized, linear_gaussian, svi, training
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
    step = svi.make_svi_step(linear_gaussian.model, family, theta_optimizer, phi_optimizer, num_samples=64,
                             schedule=schedule, inner_steps=20)
    key_init, key_epochs = jax.random.split(jax.random.PRNGKey(seed))
    state = svi.init_svi(key_init, family, params, NUM_DATA, theta_optimizer, phi_optimizer)
    epoch = jax.jit(training.make_epoch(step, 16))
    history = []
    for key in jax.random.split(key_epochs, epochs):
        state, metrics = epoch(state, key, (jnp.arange(NUM_DATA), data))
        history.append(float(metrics.elbo.mean()))
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
    new, metrics = step(state, jax.random.PRNGKey(1), (indices, data[indices]))
    moved = np.any(np.asarray(new.phi["mean"] != state.phi["mean"]), axis=1)
    np.testing.assert_array_equal(np.flatnonzero(moved), indices)
    assert int(metrics.inner_steps) == 3


def test_inner_loop_stops_at_the_tolerance(problem):
    params, data = problem
    family = mean_field_gaussian(2)
    optimizer = optax.sgd(1e-6)  # moves φ by far less than the tolerance
    step = jax.jit(svi.make_svi_step(linear_gaussian.model, family, optimizer, optimizer, inner_steps=50,
                                     inner_tolerance=1e-3))
    state = svi.init_svi(jax.random.PRNGKey(0), family, params, NUM_DATA, optimizer, optimizer)
    _, metrics = step(state, jax.random.PRNGKey(1), (jnp.arange(4), data[:4]))
    assert int(metrics.inner_steps) == 1


def test_refined_elbo_is_never_below_the_amortized_one():
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.random((64, 16)) < 0.3, jnp.float32)
    vae = amortized.make_vae(16, 3, hidden=(32,))
    params = vae.init(jax.random.PRNGKey(0))
    optimizer = optax.adam(3e-3)
    epoch = jax.jit(training.make_epoch(training.make_train_step(amortized.elbo_objective(vae), optimizer), 16))
    state = training.init_train_state(params, optimizer)
    for key in jax.random.split(jax.random.PRNGKey(1), 5):
        state, _ = epoch(state, key, data)
    subset = data[:24].at[1].set(data[0])  # two identical datapoints
    report = jax.jit(lambda key: svi.amortization_gap(key, vae, state.params, subset, refine_steps=50,
                                                     marginal_samples=500, chunk_size=100))(jax.random.PRNGKey(2))
    # Independent draws per datapoint: the same x gets two different Monte Carlo ELBOs, so that
    # the mean over datapoints averages the error away instead of repeating one draw's.
    assert report.amortized_elbo[0] != report.amortized_elbo[1]
    assert np.all(report.refined_elbo >= report.amortized_elbo)
    assert float(jnp.mean(report.amortization_gap)) > 0.05  # refinement really improves q
    # log p(x) estimate lies above the refined ELBO on average: the approximation gap is non-negative
    assert float(jnp.mean(report.approximation_gap)) > -3 * float(jnp.mean(report.log_marginal_stderr))
    np.testing.assert_allclose(report.log_marginal - report.amortized_elbo,
                               report.approximation_gap + report.amortization_gap, rtol=1e-5)

    # The trace of the refinement: step t's ELBO estimate at the φ_i it started from (step 0: the
    # encoder's φ(x_i), with step 0's key for datapoint i), and the same refined φ as without it.
    num_steps = 50
    refined, trace = jax.jit(lambda key: svi.refine(key, vae, state.params, subset, num_steps,
                                                    return_trace=True))(jax.random.PRNGKey(3))
    assert trace.shape == (num_steps, subset.shape[0])
    without = jax.jit(lambda key: svi.refine(key, vae, state.params, subset, num_steps))(jax.random.PRNGKey(3))
    for got, want in zip(jax.tree_util.tree_leaves(refined), jax.tree_util.tree_leaves(without), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    first_keys = jax.random.split(jax.random.split(jax.random.PRNGKey(3), num_steps)[0], subset.shape[0])
    phi_0 = jax.vmap(vae.encoder_output, in_axes=(None, 0))(state.params, subset)
    first = jax.vmap(lambda key, phi, x: lvmjax.elbo(key, vae.model, state.params, vae.family.distribution(phi), x,
                                                     analytic_kl=True))(first_keys, phi_0, subset)
    np.testing.assert_allclose(trace[0], first, rtol=1e-5)
    # One-sample estimates with an analytic KL: their mean over 24 datapoints climbs by more than 4 of
    # its standard errors from the first 10 steps to the last 10.
    early, late = np.asarray(trace[:10]).mean(0), np.asarray(trace[-10:]).mean(0)
    climb = late - early
    assert climb.mean() > 4 * climb.std(ddof=1) / np.sqrt(len(climb))


@pytest.mark.parametrize("family", [mean_field_gaussian(2), full_rank_gaussian(2)], ids=["mean_field", "full_rank"])
def test_a_jitted_local_update_returns_the_types_it_takes(problem, family):
    """φ from `family.init` has the exact types the update returns (no weak types), so a jitted
    update fed its own output is not compiled a second time."""
    params, data = problem
    optimizer = optax.adam(1e-2)
    phi = jax.vmap(family.init)(jax.random.split(jax.random.PRNGKey(0), NUM_DATA))
    opt_state = jax.vmap(optimizer.init)(phi)
    update = svi.make_local_update(linear_gaussian.model, family, optimizer)
    new_phi, new_opt_state, _ = jax.eval_shape(update, jax.random.PRNGKey(1), params, phi, opt_state, data)

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
    after, metrics = step(state, jax.random.PRNGKey(1), (indices, poisoned))
    assert bool(metrics.skipped)
    for left, right in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
    after, metrics = step(state, jax.random.PRNGKey(1), (indices, data[:4]))
    assert not bool(metrics.skipped) and int(after.step) == 1

"""elbo_exact against exact answers: log p(x) - KL, brute-force sums, and the score-function estimator.

Statistical checks use fixed keys and R repetitions; a mean passes when it lies
within 4 of its standard errors of the exact value.
"""

import itertools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_stderr, binary_latent_model, make_binary_latent, make_gaussian_mixture
from scipy.stats import multivariate_normal

import lvmjax
from lvmjax.models import gaussian_mixture, linear_gaussian

KEY = jax.random.PRNGKey(20261122)
MODEL = gaussian_mixture.model
LOGITS = jnp.array([0.5, -0.3, 0.1])  # a q far from the posterior of every setup below


def closed_form(params, logits, x):
    """log p(x; θ) - KL(q(z; φ) ‖ p(z | x; θ)), with distrax's categorical KL."""
    q = distrax.Categorical(logits=logits)
    return gaussian_mixture.log_marginal(params, x) - q.kl_divergence(gaussian_mixture.posterior(params, x))


def exact(params, logits, x):
    return lvmjax.elbo_exact(MODEL, params, distrax.Categorical(logits=logits), x)


def test_elbo_exact_is_log_marginal_minus_kl_and_log_marginal_exact_at_the_posterior():
    setups = [make_gaussian_mixture(seed=seed) for seed in range(3)]
    params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[p for p, _ in setups])
    points = jnp.stack([x for _, x in setups])

    def compute(params, x):
        at_posterior = lvmjax.elbo_exact(MODEL, params, gaussian_mixture.posterior(params, x), x)
        return (
            exact(params, LOGITS, x),
            closed_form(params, LOGITS, x),
            at_posterior,
            lvmjax.log_marginal_exact(MODEL, params, x),
        )

    values, expected, at_posterior, log_marginals = jax.jit(jax.vmap(compute))(params, points)
    assert np.all(expected < log_marginals - 0.05)  # the KL is not negligible
    np.testing.assert_allclose(values, expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(at_posterior, log_marginals, rtol=0, atol=2e-5)


def test_elbo_exact_matches_brute_force_sum_over_binary_states():
    params, x = make_binary_latent(latent_dim=4)
    q_logits = np.array([0.3, -1.0, 2.0, 0.0])
    q = distrax.Independent(distrax.Bernoulli(logits=jnp.asarray(q_logits, jnp.float32), dtype=jnp.float32), 1)
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    total = 0.0
    for state in itertools.product([0, 1], repeat=4):
        z = np.array(state, np.float64)
        log_q = np.sum(z * q_logits - np.logaddexp(0.0, q_logits))
        log_prior = np.sum(z * p["prior_logits"] - np.logaddexp(0.0, p["prior_logits"]))
        log_likelihood = multivariate_normal.logpdf(
            np.asarray(x, np.float64), p["weight"] @ z + p["bias"], np.diag(p["scale"] ** 2)
        )
        total += np.exp(log_q) * (log_prior + log_likelihood - log_q)
    value = jax.jit(lambda params, x: lvmjax.elbo_exact(binary_latent_model, params, q, x))(params, x)
    np.testing.assert_allclose(value, total, rtol=1e-5)


@pytest.fixture(scope="module")
def gradients(gaussian_mixture_setup):
    """∇_(θ, φ) of elbo_exact and of log p(x) - KL at q(z; φ), and of elbo_exact at q = p(z | x), and ∇_θ log p(x)."""
    params, x = gaussian_mixture_setup

    def compute(params, x):
        posterior_logits = gaussian_mixture.posterior(params, x).logits
        return (
            jax.grad(exact, argnums=(0, 1))(params, LOGITS, x),
            jax.grad(closed_form, argnums=(0, 1))(params, LOGITS, x),
            jax.grad(exact, argnums=(0, 1))(params, posterior_logits, x),
            jax.grad(gaussian_mixture.log_marginal)(params, x),
        )

    return jax.jit(compute)(params, x)


def assert_trees_close(got, want):
    for got_leaf, want_leaf in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-4, atol=1e-5)


def test_gradients_in_theta_and_phi_are_those_of_log_marginal_minus_kl(gradients):
    ours, expected, _, _ = gradients
    assert float(jnp.max(jnp.abs(ours[1]))) > 0.05  # q is far from optimal
    assert_trees_close(ours, expected)


def test_at_the_posterior_the_phi_gradient_vanishes_and_the_theta_gradient_is_that_of_log_p(gradients):
    """q = p(z | x) maximizes the ELBO over φ; holding it there, ∇_θ ELBO = ∇_θ log p(x; θ) (why EM works)."""
    _, _, (theta_grad, phi_grad), log_p_grad = gradients
    np.testing.assert_allclose(phi_grad, 0.0, atol=2e-5)
    assert_trees_close(theta_grad, log_p_grad)


def test_score_function_elbo_and_its_gradient_average_to_elbo_exact(gaussian_mixture_setup):
    params, x = gaussian_mixture_setup

    def estimate(key, logits):
        return lvmjax.elbo(key, MODEL, params, distrax.Categorical(logits=logits), x, 4, gradient="score")

    def compute(keys):
        estimates = jax.vmap(jax.value_and_grad(estimate, argnums=1), in_axes=(0, None))(keys, LOGITS)
        return estimates, jax.value_and_grad(exact, argnums=1)(params, LOGITS, x)

    (values, grads), (exact_value, exact_grad) = jax.jit(compute)(jax.random.split(KEY, 2000))
    assert float(jnp.max(jnp.abs(exact_grad))) > 0.05
    assert_within_stderr(values, exact_value)
    assert_within_stderr(grads, exact_grad)


def test_zero_probability_states_add_nothing_under_jit(gaussian_mixture_setup):
    """0 log 0 = 0: a q without component 1 has ELBO = log p(x) - Σ_{k ∈ {0, 2}} q_k log(q_k / p(k | x))."""
    params, x = gaussian_mixture_setup
    logits = jnp.array([0.5, -jnp.inf, 0.1])

    def compute(params, logits, x):
        value, grads = jax.value_and_grad(exact, argnums=(0, 1))(params, logits, x)
        return value, grads, gaussian_mixture.log_marginal(params, x), gaussian_mixture.posterior(params, x).logits

    value, grads, log_marginal, log_posterior = jax.jit(compute)(params, logits, x)
    q = np.exp([0.5, 0.1]) / np.sum(np.exp([0.5, 0.1]))
    kl = np.sum(q * (np.log(q) - np.asarray(log_posterior, np.float64)[[0, 2]]))
    np.testing.assert_allclose(value, float(log_marginal) - kl, rtol=1e-5)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(grads))


def test_a_continuous_q_is_a_type_error(linear_gaussian_setup, gaussian_mixture_setup):
    params, x = linear_gaussian_setup
    q = distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(TypeError, match="finite discrete"):
        lvmjax.elbo_exact(linear_gaussian.model, params, q, x)
    params, x = gaussian_mixture_setup
    with pytest.raises(TypeError, match="finite discrete"):
        lvmjax.elbo_exact(MODEL, params, distrax.Normal(0.0, 1.0), x)


def test_a_batch_of_q_is_refused(gaussian_mixture_setup):
    params, x = gaussian_mixture_setup
    with pytest.raises(ValueError, match="batch_shape"):
        lvmjax.elbo_exact(MODEL, params, distrax.Categorical(logits=jnp.zeros((5, 3))), x)

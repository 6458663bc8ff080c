"""The estimators against exact answers: closed forms, enumeration, identities.

Statistical checks use fixed keys and repetitions R; a mean passes when it lies
within 4 of its standard errors of the exact value.
"""

import functools
import itertools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    assert_within_stderr,
    binary_latent_model,
    make_binary_latent,
    make_gaussian_mixture,
    make_linear_gaussian,
)
from scipy.stats import multivariate_normal

import lvmjax
from lvmjax.models import gaussian_mixture, linear_gaussian

KEY = jax.random.PRNGKey(20261121)
REPS = 2000


def repeated(fn, num_reps=REPS, key=KEY):
    """fn(key) for num_reps independent keys, vmapped and compiled once."""
    return jax.jit(jax.vmap(fn))(jax.random.split(key, num_reps))


def compiled(fn, key=KEY):
    """fn(key), compiled: the estimators are meant to run under jax.jit."""
    return jax.jit(fn)(key)


def mediocre_q(params, x):
    """A Gaussian q near, but not at, the exact posterior."""
    posterior = linear_gaussian.posterior(params, x)
    scale = jnp.sqrt(jnp.diag(posterior.covariance()))
    return distrax.MultivariateNormalDiag(posterior.mean() + 0.5 * scale, 1.5 * scale)


# --- With q = p(z | x) every log-weight is log p(x) -----------------------------------


@pytest.mark.parametrize("num_samples", [1, 7, 100])
def test_exact_posterior_makes_every_bound_tight_linear_gaussian(linear_gaussian_setup, num_samples):
    params, x = linear_gaussian_setup
    exact = linear_gaussian.log_marginal(params, x)
    posterior = linear_gaussian.posterior(params, x)
    model = linear_gaussian.model
    weights, elbo, iwae, estimate = compiled(
        lambda key: (
            lvmjax.log_weights(key, model, params, posterior, x, num_samples),
            lvmjax.elbo(key, model, params, posterior, x, num_samples),
            lvmjax.iwae_bound(key, model, params, posterior, x, num_samples),
            lvmjax.log_marginal_is(key, model, params, posterior, x, num_samples),
        )
    )
    assert weights.shape == (num_samples,)
    np.testing.assert_allclose(weights, exact, rtol=0, atol=2e-5)
    np.testing.assert_allclose(elbo, exact, rtol=0, atol=2e-5)
    np.testing.assert_allclose(iwae, exact, rtol=0, atol=2e-5)
    np.testing.assert_allclose(estimate.log_marginal, exact, rtol=0, atol=2e-5)
    assert float(estimate.ess) == pytest.approx(num_samples, rel=1e-5)


@pytest.mark.parametrize("num_samples", [1, 7, 100])
def test_exact_posterior_makes_every_bound_tight_gaussian_mixture(gaussian_mixture_setup, num_samples):
    params, x = gaussian_mixture_setup
    exact = gaussian_mixture.log_marginal(params, x)
    posterior = gaussian_mixture.posterior(params, x)
    model = gaussian_mixture.model
    weights, value, estimate = compiled(
        lambda key: (
            lvmjax.log_weights(key, model, params, posterior, x, num_samples),
            lvmjax.elbo(key, model, params, posterior, x, num_samples, gradient="score"),
            lvmjax.log_marginal_is(key, model, params, posterior, x, num_samples),
        )
    )
    np.testing.assert_allclose(weights, exact, rtol=0, atol=2e-5)
    np.testing.assert_allclose(value, exact, rtol=0, atol=2e-5)
    np.testing.assert_allclose(estimate.log_marginal, exact, rtol=0, atol=2e-5)


# --- log p(x) = ELBO + KL(q ‖ p(z | x)) ------------------------------------------------


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_log_marginal_is_elbo_plus_kl_linear_gaussian(linear_gaussian_setup, covariance):
    params, x = linear_gaussian_setup
    posterior = linear_gaussian.posterior(params, x)
    if covariance == "diag":
        q = mediocre_q(params, x)
    else:
        q = distrax.MultivariateNormalTri(jnp.array([0.3, -0.2]), jnp.array([[0.5, 0.0], [0.2, 0.4]]))
    exact_elbo = linear_gaussian.exact_elbo(params, q, x)
    kl = q.kl_divergence(posterior)
    assert float(kl) > 0.05  # q is genuinely not the posterior
    np.testing.assert_allclose(exact_elbo + kl, linear_gaussian.log_marginal(params, x), rtol=1e-5)

    # The Monte Carlo ELBO, in both of its forms, is unbiased for that exact ELBO.
    model = linear_gaussian.model
    for analytic_kl in (False, True):
        values = repeated(
            lambda key, analytic_kl=analytic_kl: lvmjax.elbo(key, model, params, q, x, 1, analytic_kl=analytic_kl)
        )
        assert_within_stderr(values, exact_elbo)


def test_log_marginal_is_elbo_plus_kl_gaussian_mixture(gaussian_mixture_setup):
    params, x = gaussian_mixture_setup
    model = gaussian_mixture.model
    q = distrax.Categorical(logits=jnp.array([0.5, -0.3, 0.1]))
    states = jnp.arange(3)
    log_joints = jax.vmap(lambda z: lvmjax.log_joint(model, params, x, z))(states)
    enumerated_elbo = jnp.sum(q.probs * (log_joints - q.log_prob(states)))
    kl = q.kl_divergence(gaussian_mixture.posterior(params, x))
    assert float(kl) > 0.05
    np.testing.assert_allclose(enumerated_elbo + kl, gaussian_mixture.log_marginal(params, x), rtol=1e-5)

    for analytic_kl in (False, True):
        values = repeated(
            lambda key, analytic_kl=analytic_kl: lvmjax.elbo(
                key, model, params, q, x, 1, analytic_kl=analytic_kl, gradient="score"
            )
        )
        assert_within_stderr(values, enumerated_elbo)


# --- ELBO <= IWAE_K <= IWAE_K' <= log p(x) ----------------------------------------------


def test_bounds_are_ordered_in_expectation(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    model = linear_gaussian.model
    q = mediocre_q(params, x)
    exact = float(linear_gaussian.log_marginal(params, x))

    def bounds(key):
        return jnp.stack(
            [
                lvmjax.elbo(key, model, params, q, x, 1),
                lvmjax.iwae_bound(key, model, params, q, x, 5),
                lvmjax.iwae_bound(key, model, params, q, x, 50),
            ]
        )

    values = np.asarray(repeated(bounds, 10_000), np.float64)  # (reps, 3)
    # Paired differences (the same z_0, z_1, ... enter every K) and the gap to log p(x).
    gaps = np.column_stack([values[:, 1] - values[:, 0], values[:, 2] - values[:, 1], exact - values[:, 2]])
    mean = gaps.mean(axis=0)
    stderr = gaps.std(axis=0, ddof=1) / np.sqrt(len(gaps))
    assert np.all(mean > 4 * stderr), (mean, stderr)
    # The IWAE bound with K = 1 is the ELBO, draw for draw.
    np.testing.assert_allclose(
        repeated(lambda key: lvmjax.iwae_bound(key, model, params, q, x, 1), 10),
        repeated(lambda key: lvmjax.elbo(key, model, params, q, x, 1), 10),
        rtol=1e-6,
    )


# --- Importance sampling and naive Monte Carlo ------------------------------------------


def test_importance_sampling_is_within_four_stderr_and_stderr_is_calibrated(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    model = linear_gaussian.model
    q = mediocre_q(params, x)
    exact = float(linear_gaussian.log_marginal(params, x))
    estimate = compiled(lambda key: lvmjax.log_marginal_is(key, model, params, q, x, 1000))
    assert abs(float(estimate.log_marginal) - exact) < 4 * float(estimate.stderr)
    assert 1 < float(estimate.ess) < 1000

    estimates = repeated(lambda key: lvmjax.log_marginal_is(key, model, params, q, x, 1000), 500)
    spread = float(np.std(np.asarray(estimates.log_marginal, np.float64), ddof=1))
    reported = float(np.mean(estimates.stderr))
    # The sample standard deviation of 500 draws is known to about 1/√1000 ≈ 3%.
    assert 0.85 < reported / spread < 1.15, (reported, spread)


def test_estimate_of_p_x_is_unbiased_and_its_log_is_biased_down(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    model = linear_gaussian.model
    q = mediocre_q(params, x)
    exact = float(linear_gaussian.log_marginal(params, x))
    estimates = repeated(lambda key: lvmjax.log_marginal_is(key, model, params, q, x, 3), 20000)
    log_ratio = np.asarray(estimates.log_marginal, np.float64) - exact
    assert_within_stderr(np.exp(log_ratio), 1.0)  # E[p̂(x)] = p(x)
    stderr = log_ratio.std(ddof=1) / np.sqrt(len(log_ratio))
    assert log_ratio.mean() < -4 * stderr  # E[log p̂(x)] < log p(x), Jensen


def test_naive_monte_carlo_has_far_larger_stderr_than_importance_sampling():
    params, x = make_linear_gaussian(noise=0.01)  # a concentrated posterior
    model = linear_gaussian.model
    exact = float(linear_gaussian.log_marginal(params, x))
    posterior = linear_gaussian.posterior(params, x)
    good_q = distrax.MultivariateNormalTri(posterior.mean(), 1.2 * posterior.scale_tri)
    naive_large, naive, guided = compiled(
        lambda key: (
            lvmjax.log_marginal_naive_mc(key, model, params, x, 100_000, chunk_size=1000),
            lvmjax.log_marginal_naive_mc(key, model, params, x, 1000),
            lvmjax.log_marginal_is(key, model, params, good_q, x, 1000),
        )
    )
    assert abs(float(naive_large.log_marginal) - exact) < 4 * float(naive_large.stderr)
    assert abs(float(guided.log_marginal) - exact) < 4 * float(guided.stderr)
    assert float(naive.stderr) > 10 * float(guided.stderr), (naive, guided)
    assert float(naive.ess) < 0.05 * float(guided.ess)


@pytest.mark.parametrize("proposal", ["prior", "uniform"])
def test_naive_monte_carlo_on_binary_latents(binary_latent_setup, proposal):
    params, x = binary_latent_setup
    exact = float(lvmjax.log_marginal_exact(binary_latent_model, params, x))
    estimate = compiled(
        lambda key: lvmjax.log_marginal_naive_mc(key, binary_latent_model, params, x, 5000, proposal=proposal)
    )
    assert abs(float(estimate.log_marginal) - exact) < 4 * float(estimate.stderr)
    assert float(estimate.stderr) < 0.2


def test_uniform_proposal_is_the_seed_texts_formula(binary_latent_setup):
    """log p̂ = log |Z| + log (1/K) Σ_j p(x, z_j), with z_j uniform over {0, 1}^d."""
    params, x = binary_latent_setup
    estimate = compiled(
        lambda key: lvmjax.log_marginal_naive_mc(key, binary_latent_model, params, x, 64, proposal="uniform")
    )
    uniform = distrax.Independent(distrax.Bernoulli(logits=jnp.zeros(5), dtype=jnp.float32), 1)
    z = jax.vmap(lambda k: uniform.sample(seed=k))(jax.vmap(jax.random.fold_in, (None, 0))(KEY, jnp.arange(64)))
    log_joints = jax.vmap(lambda z_j: lvmjax.log_joint(binary_latent_model, params, x, z_j))(z)
    formula = 5 * np.log(2.0) + jax.nn.logsumexp(log_joints) - np.log(64)
    np.testing.assert_allclose(estimate.log_marginal, formula, rtol=1e-6)


# --- Gradients --------------------------------------------------------------------------


def _elbo_gradients(params, x, make_q, phi, estimator):
    """Gradients of an ELBO (exact or estimated) with respect to θ and φ."""
    return jax.grad(lambda theta, phi: estimator(theta, make_q(phi), x), argnums=(0, 1))(params, phi)


def test_reparameterized_and_score_gradients_match_the_exact_elbo_gradient(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    model = linear_gaussian.model

    def make_q(phi):
        return distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"]))

    start = mediocre_q(params, x)
    phi = {"mean": start.mean(), "log_scale": jnp.log(start.stddev())}
    exact = _elbo_gradients(params, x, make_q, phi, linear_gaussian.exact_elbo)
    exact_leaves = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(exact)])

    def flattened(key, **options):
        estimator = functools.partial(_estimated_elbo, key, model, options)
        grads = _elbo_gradients(params, x, make_q, phi, estimator)
        return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(grads)])

    for options in ({}, {"analytic_kl": True}, {"num_samples": 10, "gradient": "score"}):
        estimates = repeated(functools.partial(flattened, **options), 4000)
        assert_within_stderr(estimates, exact_leaves, floor=1e-4)


def _estimated_elbo(key, model, options, theta, q, x):
    return lvmjax.elbo(key, model, theta, q, x, **options)


def test_score_gradient_has_larger_variance_than_reparameterized(linear_gaussian_setup):
    """The reason the reparameterization trick exists (seed text, section 4.2)."""
    params, x = linear_gaussian_setup
    model = linear_gaussian.model

    def gradient_of_mean(key, gradient):
        def value(mean):
            q = distrax.MultivariateNormalDiag(mean, jnp.full(2, 0.3))
            return lvmjax.elbo(key, model, params, q, x, 4, gradient=gradient)

        return jax.grad(value)(jnp.zeros(2))

    reparam = repeated(lambda key: gradient_of_mean(key, "reparam"), 500)
    score = repeated(lambda key: gradient_of_mean(key, "score"), 500)
    assert np.all(np.var(score, axis=0) > 2 * np.var(reparam, axis=0))


# --- Exact enumeration ------------------------------------------------------------------


def test_log_marginal_exact_matches_gaussian_mixture_closed_form():
    for seed in range(3):
        params, x = make_gaussian_mixture(seed=seed)
        expected = np.log(
            sum(
                np.exp(float(jax.nn.log_softmax(params.logits)[k]))
                * multivariate_normal.pdf(
                    np.asarray(x, np.float64),
                    np.asarray(params.means[k], np.float64),
                    np.asarray(params.scale_tril[k] @ params.scale_tril[k].T, np.float64),
                )
                for k in range(3)
            )
        )
        np.testing.assert_allclose(lvmjax.log_marginal_exact(gaussian_mixture.model, params, x), expected, rtol=1e-5)
        np.testing.assert_allclose(gaussian_mixture.log_marginal(params, x), expected, rtol=1e-5)


def test_log_marginal_exact_matches_brute_force_sum_over_binary_states():
    params, x = make_binary_latent(latent_dim=6)
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    prior_probs = 1.0 / (1.0 + np.exp(-p["prior_logits"]))
    total = 0.0
    for state in itertools.product([0, 1], repeat=6):
        z = np.array(state, np.float64)
        prior = np.prod(np.where(z == 1, prior_probs, 1.0 - prior_probs))
        total += prior * multivariate_normal.pdf(
            np.asarray(x, np.float64), p["weight"] @ z + p["bias"], np.diag(p["scale"] ** 2)
        )
    np.testing.assert_allclose(lvmjax.log_marginal_exact(binary_latent_model, params, x), np.log(total), rtol=1e-5)


# --- Chunking ---------------------------------------------------------------------------


def test_chunked_and_unchunked_importance_sampling_agree(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    q = mediocre_q(params, x)
    model = linear_gaussian.model
    whole, *chunked = compiled(
        lambda key: [
            lvmjax.log_marginal_is(key, model, params, q, x, 6000, chunk_size=chunk_size)
            for chunk_size in (None, 1000, 1500, 6000)
        ]
    )
    for estimate in chunked:
        np.testing.assert_allclose(estimate.log_marginal, whole.log_marginal, rtol=1e-6)
        np.testing.assert_allclose(estimate.stderr, whole.stderr, rtol=1e-4)
        np.testing.assert_allclose(estimate.ess, whole.ess, rtol=1e-4)
    naive, naive_chunked = compiled(
        lambda key: [
            lvmjax.log_marginal_naive_mc(key, model, params, x, 6000, chunk_size=chunk_size)
            for chunk_size in (None, 500)
        ]
    )
    np.testing.assert_allclose(naive_chunked.log_marginal, naive.log_marginal, rtol=1e-6)


def test_more_samples_extend_the_same_draws(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    q = mediocre_q(params, x)
    many, few = compiled(
        lambda key: [
            lvmjax.log_weights(key, linear_gaussian.model, params, q, x, num_samples) for num_samples in (10, 4)
        ]
    )
    np.testing.assert_allclose(many[:4], few, rtol=1e-6)  # the same z_k; only rounding may differ


def test_chunked_memory_does_not_grow_with_num_samples(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    q = mediocre_q(params, x)

    def temp_bytes(num_samples, chunk_size):
        fn = jax.jit(
            lambda key: lvmjax.log_marginal_is(
                key, linear_gaussian.model, params, q, x, num_samples, chunk_size=chunk_size
            )
        )
        return fn.lower(KEY).compile().memory_analysis().temp_size_in_bytes

    small = temp_bytes(1000, 1000)
    large = temp_bytes(100_000, 1000)
    unchunked = temp_bytes(100_000, None)
    assert large <= 2 * small + 4096, (small, large)
    assert large < unchunked / 20, (large, unchunked)
    assert large < 2**20  # about 2 MB for 10^5 samples of 2-d latents would be the unchunked cost


# --- jit, vmap, float32 and float64 -----------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_everything_runs_under_jit_and_vmap_in_both_precisions(dtype):
    with jax.enable_x64(dtype == "float64"):
        dtype = jnp.dtype(dtype)
        params, x = make_linear_gaussian(dtype)
        model = linear_gaussian.model
        batch = jnp.stack([x, x + 0.5, x - 0.5])
        keys = jax.random.split(KEY, 3)
        posterior = linear_gaussian.posterior(params, x)
        phis = (
            jnp.stack([posterior.mean()] * 3) + jnp.arange(3, dtype=dtype)[:, None] * 0.1,
            jnp.full((3, 2), 0.4, dtype),
        )

        def per_datapoint(key, x, mean, scale):
            q = distrax.MultivariateNormalDiag(mean, scale)
            return jnp.stack(
                [
                    lvmjax.elbo(key, model, params, q, x, 4),
                    lvmjax.elbo(key, model, params, q, x, 4, analytic_kl=True),
                    lvmjax.iwae_bound(key, model, params, q, x, 4),
                    lvmjax.log_marginal_is(key, model, params, q, x, 8, chunk_size=4).log_marginal,
                    lvmjax.log_marginal_naive_mc(key, model, params, x, 8).log_marginal,
                    jnp.mean(lvmjax.log_weights(key, model, params, q, x, 4)),
                ]
            )

        batched = jax.jit(jax.vmap(per_datapoint))(keys, batch, *phis)
        assert batched.dtype == dtype and batched.shape == (3, 6)
        single = jax.jit(per_datapoint)
        looped = jnp.stack([single(keys[i], batch[i], phis[0][i], phis[1][i]) for i in range(3)])
        np.testing.assert_allclose(batched, looped, rtol=1e-5 if dtype == jnp.float32 else 1e-12)

        # vmap over variational parameters for one datapoint
        over_phi = jax.jit(jax.vmap(per_datapoint, in_axes=(None, None, 0, 0)))(KEY, x, *phis)
        assert over_phi.shape == (3, 6) and over_phi.dtype == dtype

        exact = linear_gaussian.log_marginal(params, x)
        tight = compiled(lambda key: lvmjax.iwae_bound(key, model, params, posterior, x, 5))
        assert tight.dtype == dtype
        np.testing.assert_allclose(tight, exact, rtol=1e-5 if dtype == jnp.float32 else 1e-12)

        mixture, point = make_gaussian_mixture(dtype)
        value = jax.jit(lvmjax.log_marginal_exact, static_argnums=0)(gaussian_mixture.model, mixture, point)
        assert value.dtype == dtype


def test_jit_with_the_model_and_sample_count_static(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    q = mediocre_q(params, x)
    jitted = jax.jit(lvmjax.elbo, static_argnames=("model", "num_samples", "analytic_kl", "gradient"))
    value = jitted(KEY, linear_gaussian.model, params, q, x, num_samples=3)
    np.testing.assert_allclose(value, lvmjax.elbo(KEY, linear_gaussian.model, params, q, x, 3), rtol=1e-6)

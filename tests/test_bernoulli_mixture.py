"""The mixture of Bernoullis and its MAP-EM against brute-force numpy sums and known mixtures."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import beta as beta_distribution

import lvmjax
from lvmjax.data import DataError
from lvmjax.models import bernoulli_mixture
from lvmjax.models._em import run_em

KEY = jax.random.PRNGKey(20261121)


def make_params(num_components=3, data_dim=6, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return bernoulli_mixture.Params(
        logits=jnp.asarray(rng.normal(size=num_components), dtype),
        probs_logits=jnp.asarray(2.0 * rng.normal(size=(num_components, data_dim)), dtype),
    )


def sample_mixture(mixing, probs, num_data, seed):
    """N datapoints from Σ_k π_k Π_d Bernoulli(μ_kd), as float32, with their components."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(mixing), size=num_data, p=mixing)
    return (rng.uniform(size=(num_data, probs.shape[1])) < probs[labels]).astype(np.float32), labels


def numpy_log_joint(params, data):
    """log π_k + Σ_d log Bernoulli(x_id; μ_kd) for every datapoint and component, in float64."""
    logits = np.asarray(params.logits, np.float64)
    probs = 1 / (1 + np.exp(-np.asarray(params.probs_logits, np.float64)))
    log_mixing = logits - np.log(np.exp(logits).sum())
    data = np.asarray(data, np.float64)
    return log_mixing + np.log(np.prod(np.where(data[:, None, :] == 1, probs, 1 - probs), axis=-1))


@pytest.fixture(scope="module")
def mixture_data():
    """600 datapoints of 16 pixels from three overlapping components."""
    rng = np.random.default_rng(3)
    mixing = np.array([0.5, 0.3, 0.2])
    probs = rng.uniform(0.1, 0.9, size=(3, 16))
    return sample_mixture(mixing, probs, 600, seed=4)[0]


# --- The model against brute force -------------------------------------------------------


def test_log_marginal_matches_brute_force_and_enumeration():
    params = make_params()
    data = (np.random.default_rng(1).uniform(size=(5, 6)) < 0.5).astype(np.float32)
    log_joint = numpy_log_joint(params, data)
    expected = np.log(np.exp(log_joint).sum(axis=1))
    log_marginal = jax.jit(jax.vmap(bernoulli_mixture.log_marginal, (None, 0)))(params, data)
    np.testing.assert_allclose(log_marginal, expected, rtol=1e-5)
    exact = jax.jit(jax.vmap(lambda x: lvmjax.log_marginal_exact(bernoulli_mixture.model, params, x)))(data)
    np.testing.assert_allclose(exact, expected, rtol=1e-5)


def test_posterior_is_bayes_rule():
    """p(z = k | x) = π_k p(x | z = k) / Σ_k' π_k' p(x | z = k'), and log p(z | x) = log p(x, z) - log p(x)."""
    params = make_params()
    x = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    joint = np.exp(numpy_log_joint(params, x[None]))[0]
    posterior = jax.jit(bernoulli_mixture.posterior)(params, x)
    np.testing.assert_allclose(posterior.probs, joint / joint.sum(), rtol=1e-5)
    log_marginal = bernoulli_mixture.log_marginal(params, x)
    for k in range(3):
        np.testing.assert_allclose(
            posterior.log_prob(k),
            lvmjax.log_joint(bernoulli_mixture.model, params, x, jnp.asarray(k)) - log_marginal,
            rtol=1e-5,
        )


def test_e_step_is_the_posterior_of_every_datapoint(mixture_data):
    params = make_params(data_dim=16)
    log_responsibilities, mean_log_likelihood = jax.jit(bernoulli_mixture.e_step)(params, mixture_data)
    log_joint = numpy_log_joint(params, mixture_data)
    log_marginal = np.log(np.exp(log_joint).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(log_responsibilities, log_joint - log_marginal, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean_log_likelihood, log_marginal.mean(), rtol=1e-6)


def test_m_step_is_the_beta_posterior_mode(mixture_data):
    """μ_kd = (Σ_i r_ik x_id + α - 1) / (N_k + α + β - 2) and π_k = N_k / N, in numpy."""
    rng = np.random.default_rng(5)
    responsibilities = rng.dirichlet(np.ones(3), size=len(mixture_data))
    alpha, beta = 3.0, 1.5
    params = jax.jit(bernoulli_mixture.m_step)(
        mixture_data, jnp.log(jnp.asarray(responsibilities, jnp.float32)), alpha, beta
    )
    counts = responsibilities.sum(axis=0)
    probs = (responsibilities.T @ mixture_data + alpha - 1) / (counts[:, None] + alpha + beta - 2)
    np.testing.assert_allclose(jax.nn.sigmoid(params.probs_logits), probs, rtol=1e-5)
    np.testing.assert_allclose(jnp.exp(params.logits), counts / len(mixture_data), rtol=1e-5)


# --- EM ----------------------------------------------------------------------------------


def test_em_never_decreases_the_map_objective(mixture_data):
    _, info = bernoulli_mixture.fit_em(KEY, mixture_data, 3, max_iter=200, tol=0.0)
    objective = np.asarray(info.objective)
    assert int(info.num_iterations) == 200 and np.all(np.isfinite(objective))
    assert np.all(np.diff(objective) >= -1e-5), np.diff(objective).min()
    assert objective[-1] > objective[0] + 0.01  # EM moved


def test_em_objective_is_the_map_objective(mixture_data):
    """The objective recorded at θ_t is (1/N) [Σ_i log p(x_i; θ_t) + log p(θ_t)]: θ_5 is what
    five iterations return, and the sixth iteration of the same run records its objective."""
    alpha, beta = 3.0, 2.0
    params, _ = bernoulli_mixture.fit_em(KEY, mixture_data, 3, max_iter=5, tol=0.0, alpha=alpha, beta=beta)
    _, info = bernoulli_mixture.fit_em(KEY, mixture_data, 3, max_iter=6, tol=0.0, alpha=alpha, beta=beta)
    log_marginals = jax.vmap(bernoulli_mixture.log_marginal, (None, 0))(params, mixture_data)
    probs = 1 / (1 + np.exp(-np.asarray(params.probs_logits, np.float64)))
    log_prior = np.sum(beta_distribution.logpdf(probs, alpha, beta))
    np.testing.assert_allclose(info.objective[5], np.mean(log_marginals) + log_prior / len(mixture_data), rtol=1e-5)


def test_em_recovers_well_separated_components():
    """μ̂ and π̂ within 5 standard errors (plus the prior's pull) of the truth, up to relabelling."""
    rng = np.random.default_rng(6)
    mixing = np.array([0.5, 0.3, 0.2])
    probs = np.where(rng.uniform(size=(3, 20)) < 0.5, 0.1, 0.9)
    probs[1] = 1 - probs[0]  # no two components alike
    num_data = 3000
    data, _ = sample_mixture(mixing, probs, num_data, seed=7)
    params, info = bernoulli_mixture.fit_em(KEY, data, 3, n_init=3)
    assert bool(info.converged)
    fitted_probs = np.asarray(jax.nn.sigmoid(params.probs_logits), np.float64)
    fitted_mixing = np.asarray(jax.nn.softmax(params.logits), np.float64)
    order = min(itertools.permutations(range(3)), key=lambda perm: np.abs(fitted_probs[list(perm)] - probs).sum())
    fitted_probs, fitted_mixing = fitted_probs[list(order)], fitted_mixing[list(order)]
    counts = mixing[:, None] * num_data
    np.testing.assert_array_less(np.abs(fitted_probs - probs), 5 * np.sqrt(probs * (1 - probs) / counts) + 2 / counts)
    np.testing.assert_array_less(np.abs(fitted_mixing - mixing), 5 * np.sqrt(mixing * (1 - mixing) / num_data))


def test_no_fitted_probability_is_zero_or_one(mixture_data):
    """A pixel always 0 (or always 1) gets μ_kd = 1 / (N_k + 2) (or 1 - that) under Beta(2, 2)."""
    data = mixture_data.copy()
    data[:, 0], data[:, 1] = 0.0, 1.0
    params, _ = bernoulli_mixture.fit_em(KEY, data, 3, max_iter=200, tol=0.0)
    probs = 1 / (1 + np.exp(-np.asarray(params.probs_logits, np.float64)))
    assert np.all(np.isfinite(params.probs_logits)) and np.all((probs > 0) & (probs < 1))
    counts = np.exp(np.asarray(params.logits, np.float64)) * len(data)
    np.testing.assert_allclose(probs[:, 0], 1 / (counts + 2), rtol=1e-4)
    np.testing.assert_allclose(1 - probs[:, 1], 1 / (counts + 2), rtol=1e-3)


def test_restarts_run_in_parallel_and_the_best_is_kept():
    """fit_em's n_init restarts are EM from `initial_params` with the keys split(key, n_init); the best is returned."""
    rng = np.random.default_rng(8)
    data = jnp.asarray(sample_mixture(np.full(5, 0.2), rng.uniform(0.2, 0.8, size=(5, 12)), 400, seed=9)[0])
    num_restarts, max_iter, tol = 6, 30, 1e-4

    @jax.jit
    def restart(key):
        def step(params):
            log_responsibilities, mean_log_likelihood = bernoulli_mixture.e_step(params, data)
            objective = mean_log_likelihood + bernoulli_mixture.log_parameter_prior(params) / len(data)
            return bernoulli_mixture.m_step(data, log_responsibilities), objective

        params, _ = run_em(step, bernoulli_mixture.initial_params(key, data, 5), max_iter, tol)
        return params, step(params)[1]

    restarts = [restart(key) for key in jax.random.split(KEY, num_restarts)]
    finals = np.array([float(final) for _, final in restarts])
    assert finals.max() - finals.min() > 1e-3  # the restarts end in different optima
    params, _ = bernoulli_mixture.fit_em(KEY, data, 5, max_iter=max_iter, tol=tol, n_init=num_restarts)
    best = restarts[int(np.argmax(finals))][0]
    np.testing.assert_allclose(params.probs_logits, best.probs_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(params.logits, best.logits, rtol=1e-4, atol=1e-4)


def test_initial_params_start_from_distinct_datapoints(mixture_data):
    """Every k-means++ centre is a datapoint of its own component, so no component starts empty."""
    params = bernoulli_mixture.initial_params(KEY, mixture_data, 3)
    assert np.all(np.exp(np.asarray(params.logits)) * len(mixture_data) >= 1 - 1e-4)


def test_integer_data_is_fitted_in_the_default_float_dtype(mixture_data):
    params, info = bernoulli_mixture.fit_em(KEY, mixture_data.astype(np.int32), 3, max_iter=5, tol=0.0)
    assert params.probs_logits.dtype == jnp.float32 and info.objective.dtype == jnp.float32


# --- Bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda data: (data * 0.5, {}), DataError, "values that are not 0 or 1"),
        (
            lambda data: (np.where(np.arange(data.size).reshape(data.shape) == 7, np.nan, data), {}),
            ValueError,
            r"data contains non-finite values \(NaN or inf\)",
        ),
        (
            lambda data: (np.where(np.arange(data.size).reshape(data.shape) == 7, np.inf, data), {}),
            ValueError,
            r"data contains non-finite values \(NaN or inf\)",
        ),
        (
            lambda data: (data[:2], {}),
            ValueError,
            r"num_components must be between 1 and the number of datapoints \(2\), got 3",
        ),
        (
            lambda data: (data, {"num_components": 0}),
            ValueError,
            r"num_components must be between 1 and the number of datapoints \(600\), got 0",
        ),
        (lambda data: (data[0], {}), ValueError, r"data must be 2-D \(N datapoints, D dimensions\), got shape \(16,\)"),
        (lambda data: (data[:0], {}), ValueError, r"data is empty \(shape \(0, 16\)\)"),
        (lambda data: (data, {"alpha": 0.5}), ValueError, "alpha must be at least 1, got 0.5"),
        (lambda data: (data, {"beta": 0.0}), ValueError, "beta must be at least 1, got 0.0"),
        (lambda data: (data, {"n_init": 0}), ValueError, "n_init must be at least 1, got 0"),
    ],
)
def test_bad_input_raises(mixture_data, change, error, message):
    data, options = change(mixture_data)
    options = {"num_components": 3, **options}
    with pytest.raises(error, match=message):
        bernoulli_mixture.fit_em(KEY, data, **options)


def test_bic_is_the_penalized_log_likelihood():
    data = (jax.random.uniform(jax.random.key(3), (40, 6)) < 0.3).astype(jnp.float32)
    params = bernoulli_mixture.Params(jnp.array([0.3, -0.2]), jax.random.normal(jax.random.key(1), (2, 6)))
    total = float(jnp.sum(jax.vmap(bernoulli_mixture.log_marginal, in_axes=(None, 0))(params, data)))
    assert bernoulli_mixture.num_free_parameters(2, 6) == 1 + 12
    np.testing.assert_allclose(float(bernoulli_mixture.bic(params, data)), -2 * total + 13 * np.log(40), rtol=1e-5)

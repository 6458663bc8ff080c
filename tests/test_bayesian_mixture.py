"""The variational Bayesian Gaussian mixture: scikit-learn's updates, the exact ELBO, a normalized predictive."""

import functools
import pathlib
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gammaln, multigammaln

from lvmjax.errors import ArgumentError
from lvmjax.models import bayesian_mixture
from lvmjax.models.bayesian_mixture import Posterior

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the repository, not of the installed lvmjax

from benchmarks.bgmm import (  # noqa: E402
    SKLEARN_WEIGHT_PRIORS,
    initialize_from,
    kmeans_plus_plus_assignments,
    predictive_from_sklearn,
)

KEY = jax.random.key(0)
COVARIANCE_TYPES = bayesian_mixture.COVARIANCE_TYPES
WEIGHT_PRIORS = bayesian_mixture.WEIGHT_PRIORS


def sample_clusters(num_data, data_dim=2, seed=0, dtype=np.float64, correlated=True):
    """num_data points from 3 well-separated Gaussians in data_dim dimensions (axis-aligned unless
    `correlated`), shuffled."""
    rng = np.random.default_rng(seed)
    means = 8.0 * np.eye(3, data_dim)
    means[0] = 0.0
    labels = rng.integers(0, 3, num_data)
    mixing = 0.7 * rng.normal(size=(3, data_dim, data_dim))
    if not correlated:
        mixing = mixing * np.eye(data_dim)
    data = np.einsum("nd,nde->ne", rng.normal(size=(num_data, data_dim)), mixing[labels]) + means[labels]
    return data.astype(dtype)


@pytest.fixture(scope="module")
def clusters():
    return sample_clusters(600)


def _sklearn(num_components, covariance_type, weight_prior, **options):
    mixture = pytest.importorskip("sklearn.mixture")
    return mixture.BayesianGaussianMixture(
        n_components=num_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=SKLEARN_WEIGHT_PRIORS[weight_prior],
        **options,
    )


def _assert_posteriors_close(ours, theirs, rtol):
    for name, mine, reference in zip(bayesian_mixture.Posterior._fields, ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(reference), rtol=rtol, atol=rtol, err_msg=name)


# --- The updates are scikit-learn's -----------------------------------------------------


@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_update_is_scikit_learns_m_step(clusters, covariance_type, weight_prior):
    reference = _sklearn(5, covariance_type, weight_prior)
    responsibilities = np.random.default_rng(1).dirichlet(np.ones(5), size=len(clusters))
    reference._check_parameters(clusters)
    reference._initialize(clusters, responsibilities)
    with jax.enable_x64(True):
        data = jnp.asarray(clusters)
        prior = bayesian_mixture.default_prior(data, 5, covariance_type)
        np.testing.assert_allclose(prior.mean, reference.mean_prior_, rtol=1e-12)
        np.testing.assert_allclose(prior.covariance, reference.covariance_prior_, rtol=1e-12)
        posterior = bayesian_mixture.m_step(
            data, jnp.log(jnp.asarray(responsibilities)), prior, covariance_type, weight_prior
        )
        log_responsibilities, _ = bayesian_mixture.e_step(posterior, prior, data)
        _assert_posteriors_close(posterior, predictive_from_sklearn(reference, np.float64), 1e-10)
    if covariance_type == "full":  # "diag" and "spherical" take the Gammas' E[log |Λ_k|] (module docstring)
        _, expected = reference._estimate_log_prob_resp(clusters)
        np.testing.assert_allclose(log_responsibilities, expected, atol=1e-10)


def test_iterations_from_the_same_start_follow_scikit_learn(clusters):
    """20 iterations from the same responsibilities reach scikit-learn's posterior, to float64 rounding."""
    responsibilities = np.eye(5)[np.random.default_rng(2).integers(0, 5, len(clusters))]
    reference = _sklearn(5, "full", "dirichlet-process", max_iter=20, tol=0.0)
    reference._initialize_parameters = functools.partial(initialize_from, reference, responsibilities)
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 iterations on purpose
        reference.fit(clusters)
    with jax.enable_x64(True):
        posterior, info = bayesian_mixture.fit_vb(
            KEY, jnp.asarray(clusters), 5, max_iter=20, tol=0.0, init_responsibilities=responsibilities
        )
        _assert_posteriors_close(posterior, predictive_from_sklearn(reference, np.float64), 1e-8)
    assert int(info.num_iterations) == reference.n_iter_ == 20


# --- The ELBO ---------------------------------------------------------------------------


def _log_marginal_normal_wishart(data, mean, mean_precision, dof, covariance):
    """log p(x_1..N) under N(μ, Λ⁻¹), μ | Λ ~ N(m_0, (β_0 Λ)⁻¹), Λ ~ W(W_0, ν_0) (Murphy 2007, eq. 266)."""
    num_data, data_dim = data.shape
    average = data.mean(axis=0)
    deviation = average - mean
    scatter = (data - average).T @ (data - average)
    posterior_precision, posterior_dof = mean_precision + num_data, dof + num_data
    posterior_covariance = (
        covariance + scatter + mean_precision * num_data / posterior_precision * np.outer(deviation, deviation)
    )
    return (
        -0.5 * num_data * data_dim * np.log(np.pi)
        + multigammaln(0.5 * posterior_dof, data_dim)
        - multigammaln(0.5 * dof, data_dim)
        + 0.5 * dof * np.linalg.slogdet(covariance)[1]
        - 0.5 * posterior_dof * np.linalg.slogdet(posterior_covariance)[1]
        + 0.5 * data_dim * np.log(mean_precision / posterior_precision)
    )


def _log_marginal_shared_gamma(data, mean, mean_precision, shape, rate):
    """log p(x_1..N) under x_nd ~ N(μ_d, 1/λ), μ_d | λ ~ N(m_0d, 1/(β_0 λ)), λ ~ Gamma(shape, rate)."""
    num_data, data_dim = data.shape
    average = data.mean(axis=0)
    posterior_precision = mean_precision + num_data
    posterior_shape = shape + 0.5 * num_data * data_dim
    posterior_rate = rate + 0.5 * (
        np.sum((data - average) ** 2) + mean_precision * num_data / posterior_precision * np.sum((average - mean) ** 2)
    )
    return (
        gammaln(posterior_shape)
        - gammaln(shape)
        + shape * np.log(rate)
        - posterior_shape * np.log(posterior_rate)
        + 0.5 * data_dim * np.log(mean_precision / posterior_precision)
        - 0.5 * num_data * data_dim * np.log(2 * np.pi)
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_elbo_of_one_component_is_the_exact_log_marginal_likelihood(covariance_type):
    """With K = 1 the update is the exact conjugate posterior, where the ELBO equals log p(x_1..N)."""
    data = np.random.default_rng(3).normal(size=(40, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0, 0, 2]]) + 1
    num_data, data_dim = data.shape
    with jax.enable_x64(True):
        prior = bayesian_mixture.default_prior(jnp.asarray(data), 1, covariance_type)
        posterior = bayesian_mixture.m_step(
            jnp.asarray(data), jnp.zeros((num_data, 1)), prior, covariance_type, "dirichlet", reg_covar=0.0
        )
        _, elbo = bayesian_mixture.e_step(posterior, prior, jnp.asarray(data))
    mean, precision, dof, covariance = (np.asarray(field) for field in prior[1:])
    if covariance_type == "full":
        exact = _log_marginal_normal_wishart(data, mean, precision, dof, covariance)
    elif covariance_type == "diag":  # one Normal-Gamma per dimension: the D = 1 Normal-Wishart
        exact = sum(
            _log_marginal_normal_wishart(data[:, [d]], mean[[d]], precision, dof, covariance[[d]][:, None])
            for d in range(data_dim)
        )
    else:  # one Gamma(D ν_0 / 2, D W_0⁻¹ / 2) precision for all dimensions
        exact = _log_marginal_shared_gamma(data, mean, precision, 0.5 * data_dim * dof, 0.5 * data_dim * covariance)
    np.testing.assert_allclose(float(elbo) * num_data, exact, rtol=1e-12)


@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_kl_divergence_of_the_prior_from_itself_is_zero(clusters, covariance_type, weight_prior):
    with jax.enable_x64(True):
        prior = bayesian_mixture.default_prior(jnp.asarray(clusters), 4, covariance_type)
        concentration = jnp.full((2, 4) if weight_prior == "dirichlet-process" else (4,), prior.weight_concentration)
        if weight_prior == "dirichlet-process":
            concentration = concentration.at[0].set(1.0)  # the sticks' Beta(1, γ)
        posterior = bayesian_mixture.Posterior(
            concentration,
            jnp.tile(prior.mean, (4, 1)),
            jnp.full(4, prior.mean_precision),
            jnp.full(4, prior.degrees_of_freedom),
            jnp.tile(prior.covariance / prior.degrees_of_freedom, (4,) + (1,) * prior.covariance.ndim),
        )
        assert abs(float(jax.jit(bayesian_mixture.kl_divergence)(posterior, prior))) < 1e-12


# Most of the time of these tests is compiling `fit_vb`, once per shape and static option: the tests
# below share these two (K, max_iter) settings, so that each one compiles for the first test only.
FLOAT64_FIT = {"num_components": 8, "max_iter": 100}
FLOAT32_FIT = {"num_components": 10, "max_iter": 200}


@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_the_elbo_never_decreases(clusters, covariance_type, weight_prior):
    with jax.enable_x64(True):
        data = jnp.asarray(clusters)
        _, info = bayesian_mixture.fit_vb(
            KEY, data, covariance_type=covariance_type, weight_prior=weight_prior, tol=0.0, **FLOAT64_FIT
        )
    trace = np.asarray(info.objective)
    assert int(info.num_iterations) == FLOAT64_FIT["max_iter"] and np.all(np.isfinite(trace))
    assert np.all(np.diff(trace) >= -1e-12 * np.abs(trace[1:])), np.min(np.diff(trace) / np.abs(trace[1:]))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_the_elbo_never_decreases_in_float32(clusters, covariance_type):
    _, info = bayesian_mixture.fit_vb(
        KEY, jnp.asarray(clusters, jnp.float32), covariance_type=covariance_type, tol=0.0, **FLOAT32_FIT
    )
    trace = np.asarray(info.objective, np.float64)
    assert int(info.num_iterations) == FLOAT32_FIT["max_iter"] and np.all(np.isfinite(trace))
    # the ELBO is a mean of N terms and a sum of K KL divergences, each rounded to a few ulps
    assert np.all(np.diff(trace) >= -64 * np.finfo(np.float32).eps * np.abs(trace[1:]))


@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_fixed_point_is_a_stationary_point_of_the_elbo(covariance_type, weight_prior):
    """Coordinate ascent converges where the gradient of the ELBO (at the optimal q(z)) in q's parameters is 0:
    true only if the ELBO and the updates are one objective, which pins every expectation and KL term.

    On axis-aligned clusters, where both covariance types converge to rounding in 100 iterations.
    """
    with jax.enable_x64(True):
        data = jnp.asarray(sample_clusters(600, correlated=False))
        prior = bayesian_mixture.default_prior(data, FLOAT64_FIT["num_components"], covariance_type)
        posterior, _ = bayesian_mixture.fit_vb(
            KEY, data, covariance_type=covariance_type, weight_prior=weight_prior, tol=0.0, reg_covar=0.0, **FLOAT64_FIT
        )
        gradient = jax.grad(lambda posterior: bayesian_mixture.e_step(posterior, prior, data)[1])(posterior)
    if covariance_type == "full":  # only the symmetric part of dL/dC_k moves C_k
        gradient = gradient._replace(covariances=gradient.covariances + np.swapaxes(gradient.covariances, 1, 2))
    # θ ∂L/∂θ: the change of the ELBO per datapoint under a relative change of θ (about 0.03 at the start)
    sizes = {
        name: float(np.max(np.abs(np.asarray(g) * np.asarray(p))))
        for name, g, p in zip(Posterior._fields, gradient, posterior, strict=True)
    }
    assert max(sizes.values()) < 1e-10, sizes


# --- What the fit finds -----------------------------------------------------------------


def test_the_dirichlet_process_keeps_three_of_ten_components(clusters):
    posterior, info = bayesian_mixture.fit_vb(KEY, jnp.asarray(clusters, jnp.float32), tol=1e-6, **FLOAT32_FIT)
    assert bool(info.converged)
    weights = np.asarray(bayesian_mixture.expected_weights(posterior))
    assert int(bayesian_mixture.effective_components(posterior)) == 3, weights
    np.testing.assert_allclose(np.sort(weights)[-3:].sum(), 1.0, atol=0.03)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)


@jax.jit
def _held_out(posterior, test):
    return jnp.mean(jax.vmap(bayesian_mixture.log_predictive, (None, 0))(posterior, test))


def test_held_out_log_likelihood_matches_scikit_learn():
    """Both best of 2 restarts, each from its own initialization; both posteriors scored by log_predictive."""
    data = sample_clusters(900, data_dim=3, seed=1, dtype=np.float32)
    train, test = data[:600], data[600:]
    tol = 1e-3  # scikit-learn's, on its bound summed over the N datapoints
    reference = _sklearn(6, "full", "dirichlet-process", max_iter=300, tol=tol, n_init=2, random_state=0)
    reference.fit(train)
    posterior, info = bayesian_mixture.fit_vb(
        KEY, jnp.asarray(train), 6, "full", max_iter=300, tol=tol / len(train), n_init=2
    )
    assert bool(info.converged)
    ours = float(_held_out(posterior, jnp.asarray(test)))
    theirs = float(_held_out(predictive_from_sklearn(reference), jnp.asarray(test)))
    assert abs(ours - theirs) < 0.05, (ours, theirs)


def test_responsibilities_are_scikit_learns_predict_proba(clusters):
    reference = _sklearn(4, "full", "dirichlet-process", random_state=0).fit(clusters)
    with jax.enable_x64(True):
        posterior = predictive_from_sklearn(reference, np.float64)
        ours = jax.jit(jax.vmap(bayesian_mixture.responsibilities, (None, 0)))(posterior, jnp.asarray(clusters))
        np.testing.assert_allclose(bayesian_mixture.expected_weights(posterior), reference.weights_, rtol=1e-10)
    np.testing.assert_allclose(ours, reference.predict_proba(clusters), atol=1e-8)


def test_parallel_restarts_return_the_best(clusters):
    with jax.enable_x64(True):
        data = jnp.asarray(clusters)
        prior = bayesian_mixture.default_prior(data, 5)
        posterior, _ = bayesian_mixture.fit_vb(KEY, data, 5, max_iter=20, tol=0.0, n_init=2)
        best = float(bayesian_mixture.e_step(posterior, prior, data)[1])
        finals = []
        for key in jax.random.split(KEY, 2):  # each restart alone, from the start fit_vb gives it
            start = kmeans_plus_plus_assignments(key, clusters, 5)
            single, _ = bayesian_mixture.fit_vb(KEY, data, 5, max_iter=20, tol=0.0, init_responsibilities=start)
            finals.append(float(bayesian_mixture.e_step(single, prior, data)[1]))
    assert best == pytest.approx(max(finals), abs=1e-12), (best, finals)


# --- The posterior predictive -----------------------------------------------------------


def _posterior(covariance_type, dtype=jnp.float64):
    """Two components in 2-D with few degrees of freedom, so that the Student-t tails are heavy."""
    covariances = {
        "full": jnp.array([[[1.0, 0.6], [0.6, 2.0]], [[0.5, -0.2], [-0.2, 0.3]]]),
        "diag": jnp.array([[1.0, 2.0], [0.5, 0.3]]),
        "spherical": jnp.array([1.0, 0.4]),
    }[covariance_type]
    return bayesian_mixture.Posterior(
        jnp.array([[3.0, 1.5], [2.0, 0.5]], dtype),  # sticks (a_k; b_k): E[π] = (0.6, 0.4 · 0.75) renormalized
        jnp.array([[0.0, 0.0], [2.0, -1.0]], dtype),
        jnp.array([2.0, 5.0], dtype),
        jnp.array([6.0, 9.0], dtype),
        covariances.astype(dtype),
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_predictive_is_a_normalized_density(covariance_type):
    with jax.enable_x64(True):
        posterior = _posterior(covariance_type)
        axis = jnp.linspace(-60.0, 60.0, 1201)  # the tails beyond ±60 hold < 1e-4 at 5 degrees of freedom
        grid = jnp.stack(jnp.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
        densities = jnp.exp(jax.jit(jax.vmap(bayesian_mixture.log_predictive, (None, 0)))(posterior, grid))
        total = float(jnp.sum(densities) * (axis[1] - axis[0]) ** 2)
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_predictive_tends_to_the_gaussian_at_the_posterior_mean(covariance_type):
    """One component with β_1, ν_1 -> ∞: St(x; m, (1 + β)/β · C, ν + 1 - D) -> N(x; m, C = E[Λ]⁻¹)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    with jax.enable_x64(True):
        posterior = _posterior(covariance_type)
        posterior = bayesian_mixture.Posterior(
            jnp.array([2.0]), posterior.means[:1], jnp.array([1e8]), jnp.array([1e8]), posterior.covariances[:1]
        )
        points = jnp.asarray(np.random.default_rng(4).normal(size=(20, 2)) * 2)
        ours = jax.jit(jax.vmap(bayesian_mixture.log_predictive, (None, 0)))(posterior, points)
    covariance = np.asarray(posterior.covariances[0])
    covariance = covariance if covariance.ndim == 2 else np.diag(covariance * np.ones(2))
    expected = scipy_stats.multivariate_normal(np.asarray(posterior.means[0]), covariance).logpdf(np.asarray(points))
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_expected_weights_of_the_sticks():
    with jax.enable_x64(True):
        weights = bayesian_mixture.expected_weights(_posterior("full"))
    np.testing.assert_allclose(weights, np.array([0.6, 0.4 * 0.75]) / 0.9, rtol=1e-12)


# --- Bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": np.array([[0.0, np.nan]] * 10)}, "non-finite"),
        ({"num_components": 0}, "num_components"),
        ({"num_components": 11}, "num_components"),
        ({"covariance_type": "tied"}, "covariance_type"),
        ({"weight_prior": "pitman-yor"}, "weight_prior"),
        ({"reg_covar": -1.0}, "reg_covar"),
        ({"n_init": 0}, "n_init"),
        ({"prior": {"degrees_of_freedom": 1.0}}, "degrees_of_freedom"),
        ({"prior": {"weight_concentration": 0.0}}, "weight_concentration"),
        ({"prior": {"mean_precision": -1.0}}, "mean_precision"),
        ({"prior": {"covariance": -np.eye(2)}}, "covariance"),
        ({"prior": {"mean": np.zeros(3)}}, "prior.mean"),
        ({"init_responsibilities": np.ones((10, 3))}, "init_responsibilities"),
        ({"init_responsibilities": -np.ones((10, 2))}, "init_responsibilities"),
    ],
)
def test_bad_input_is_an_argument_error_that_names_it(change, message):
    data = np.random.default_rng(5).normal(size=(10, 2))
    arguments = {"data": data, "num_components": 2, "covariance_type": "full", "weight_prior": "dirichlet"}
    arguments |= {name: value for name, value in change.items() if name != "prior"}
    if "prior" in change:
        arguments["prior"] = bayesian_mixture.default_prior(data, 2)._replace(**change["prior"])
    with pytest.raises(ArgumentError, match=message):
        bayesian_mixture.fit_vb(KEY, **arguments)


def test_log_predictive_takes_one_datapoint():
    with pytest.raises(ArgumentError, match=r"jax\.vmap"):
        bayesian_mixture.log_predictive(_posterior("full", jnp.float32), jnp.zeros((5, 2)))
    with pytest.raises(ArgumentError, match="non-finite"):
        bayesian_mixture.responsibilities(_posterior("full", jnp.float32), jnp.array([0.0, jnp.inf]))

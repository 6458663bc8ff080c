"""Factor analysis and probabilistic PCA fitted by EM and in closed form, against scikit-learn."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA, FactorAnalysis
from threadpoolctl import threadpool_limits

from lvmjax.models import linear_gaussian

KEY = jax.random.PRNGKey(20261121)
LATENT_DIM = 2


def mean_log_likelihood(params, data):
    """(1/N) Σ_i log p(x_i; θ), one datapoint at a time through `linear_gaussian.log_marginal`."""
    return jnp.mean(jax.jit(jax.vmap(linear_gaussian.log_marginal, (None, 0)))(params, data))


@pytest.fixture(scope="module")
def factor_data():
    """2000 datapoints of 7 dimensions from a factor-analysis model with 2 factors."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(7, LATENT_DIM))
    noise_variance = rng.uniform(0.2, 1.0, size=7)
    bias = rng.normal(size=7)
    latents = rng.normal(size=(2000, LATENT_DIM))
    data = latents @ weight.T + bias + np.sqrt(noise_variance) * rng.normal(size=(2000, 7))
    return data.astype(np.float32)


@pytest.fixture(scope="module")
def factor_fit(factor_data):
    return linear_gaussian.fit_factor_analysis(KEY, factor_data, LATENT_DIM)


@pytest.fixture(scope="module")
def ppca_em_fit(factor_data):
    return linear_gaussian.fit_ppca_em(KEY, factor_data, LATENT_DIM)


def objective_trace(info):
    return np.asarray(info.objective[: int(info.num_iterations)])


# --- Factor analysis by EM ---------------------------------------------------------------


def test_factor_analysis_em_never_decreases_the_log_likelihood(factor_fit):
    params, info = factor_fit
    objective = objective_trace(info)
    assert bool(info.converged) and len(objective) > 5
    assert np.all(np.diff(objective) >= -1e-5), np.diff(objective).min()
    assert params.noise_variance.shape == (7,) and np.all(params.noise_variance >= 1e-6)


@pytest.mark.parametrize("fit", [linear_gaussian.fit_factor_analysis, linear_gaussian.fit_ppca_em])
def test_em_objective_is_the_exact_mean_log_likelihood(factor_data, fit):
    """The objective recorded at θ_t is (1/N) Σ_i log N(x_i; b, W Wᵀ + Ψ): θ_3 is what three
    iterations return, and the fourth iteration of the same run records its objective."""
    params, _ = fit(KEY, factor_data, LATENT_DIM, max_iter=3)
    _, info = fit(KEY, factor_data, LATENT_DIM, max_iter=4)
    np.testing.assert_allclose(info.objective[3], mean_log_likelihood(params, factor_data), rtol=1e-5)


def test_factor_analysis_reaches_scikit_learns_maximum_likelihood(factor_data):
    """Both at the maximum likelihood, ours run until float32 sees no change of the objective: the
    likelihood is flat enough there that the covariances still differ by up to 0.009."""
    params, _ = linear_gaussian.fit_factor_analysis(KEY, factor_data, LATENT_DIM, tol=1e-8)
    reference = FactorAnalysis(n_components=LATENT_DIM, svd_method="lapack", tol=1e-4, max_iter=10_000)
    with threadpool_limits(limits=1):  # OpenBLAS threads contend with XLA's: 100 times slower without
        reference.fit(factor_data.astype(np.float64))
    np.testing.assert_allclose(
        mean_log_likelihood(params, factor_data), reference.score(factor_data.astype(np.float64)), atol=1e-3
    )
    np.testing.assert_allclose(
        params.weight @ params.weight.T + jnp.diag(params.noise_variance), reference.get_covariance(), atol=1e-2
    )


# --- Probabilistic PCA -------------------------------------------------------------------


def test_ppca_closed_form_is_scikit_learns_ppca(factor_data):
    """PCA.score is the PPCA log-likelihood; PCA's covariance divides by N - 1 where the ML one divides by N."""
    params = linear_gaussian.fit_ppca(factor_data, LATENT_DIM)
    assert params.noise_variance.shape == ()
    data = factor_data.astype(np.float64)
    reference = PCA(n_components=LATENT_DIM).fit(data)
    np.testing.assert_allclose(mean_log_likelihood(params, factor_data), reference.score(data), atol=1e-4)
    covariance = params.weight @ params.weight.T + params.noise_variance * jnp.eye(7)
    num_data = len(data)
    np.testing.assert_allclose(
        np.asarray(covariance, np.float64) * num_data / (num_data - 1), reference.get_covariance(), rtol=1e-4, atol=1e-5
    )


def test_ppca_em_converges_to_the_closed_form(factor_data, ppca_em_fit):
    params, _ = ppca_em_fit
    closed_form = linear_gaussian.fit_ppca(factor_data, LATENT_DIM)
    np.testing.assert_allclose(
        mean_log_likelihood(params, factor_data), mean_log_likelihood(closed_form, factor_data), atol=1e-4
    )
    np.testing.assert_allclose(params.noise_variance, closed_form.noise_variance, rtol=1e-3)
    # W is determined up to a rotation; W Wᵀ is not. EM stops once the log-likelihood, flat at its
    # maximum, stops changing in float32, with θ still about √tol from the optimum.
    np.testing.assert_allclose(params.weight @ params.weight.T, closed_form.weight @ closed_form.weight.T, atol=5e-2)


def test_ppca_em_never_decreases_the_log_likelihood(ppca_em_fit):
    params, info = ppca_em_fit
    objective = objective_trace(info)
    assert len(objective) > 5 and params.noise_variance.shape == ()
    assert np.all(np.diff(objective) >= -1e-5), np.diff(objective).min()


# --- Bad input ---------------------------------------------------------------------------


FITS = {
    "factor_analysis": lambda data, latent_dim: linear_gaussian.fit_factor_analysis(KEY, data, latent_dim),
    "ppca": linear_gaussian.fit_ppca,
    "ppca_em": lambda data, latent_dim: linear_gaussian.fit_ppca_em(KEY, data, latent_dim),
}


def with_value(data, value):
    data = data.copy()
    data[5, 2] = value
    return data


@pytest.mark.parametrize("fit", FITS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: (with_value(data, np.nan), LATENT_DIM), r"data contains non-finite values \(NaN or inf\)"),
        (lambda data: (with_value(data, -np.inf), LATENT_DIM), r"data contains non-finite values \(NaN or inf\)"),
        (lambda data: (data, 0), "latent_dim must be at least 1"),
        (lambda data: (data, 7), "latent_dim=7 must be below the data dimension D=7"),
        (lambda data: (data[0], LATENT_DIM), r"data must be 2-D \(N datapoints, D dimensions\), got shape \(7,\)"),
        (lambda data: (data[:1], LATENT_DIM), "fitting needs at least 2 datapoints, but data has N=1"),
    ],
)
def test_bad_input_raises(factor_data, fit, change, message):
    data, latent_dim = change(factor_data)
    with pytest.raises(ValueError, match=message):
        FITS[fit](data, latent_dim)


def test_factor_analysis_rejects_a_constant_column(factor_data):
    data = factor_data.copy()
    data[:, 3] = 1.5
    message = "column 3 is constant; factor analysis needs every column to vary, drop it."
    with pytest.raises(ValueError, match=re.escape(message)):
        linear_gaussian.fit_factor_analysis(KEY, data, LATENT_DIM)
    linear_gaussian.fit_ppca(data, LATENT_DIM)  # PPCA's σ² covers a constant column


def test_bic_counts_parameters_up_to_rotation():
    # D = 5, d = 2: 5 means + 10 loadings - 1 rotation angle + 5 (FA) or 1 (PPCA) noise variances.
    assert linear_gaussian.num_free_parameters(5, 2) == 19
    assert linear_gaussian.num_free_parameters(5, 2, isotropic=True) == 15
    # d = D - 1 PPCA has as many parameters as a full Gaussian, D + D(D + 1)/2.
    assert linear_gaussian.num_free_parameters(6, 5, isotropic=True) == 6 + 21
    data = jax.random.normal(jax.random.key(0), (50, 5))
    params = linear_gaussian.fit_ppca(data, 2)
    total = float(jnp.sum(jax.vmap(linear_gaussian.log_marginal, in_axes=(None, 0))(params, data)))
    np.testing.assert_allclose(float(linear_gaussian.bic(params, data)), -2 * total + 15 * np.log(50), rtol=1e-6)

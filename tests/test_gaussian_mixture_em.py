"""EM for the Gaussian mixture: exact E-step, monotone log-likelihood, scikit-learn agreement."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvmjax
from lvmjax.models import gaussian_mixture

KEY = jax.random.PRNGKey(0)


def sample_mixture(num_data=600, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [-4.0, 3.0, 2.0]])
    scales = np.array([[1.0, 0.5, 0.8], [0.7, 1.2, 0.6], [1.5, 0.6, 1.0]])
    labels = rng.choice(3, size=num_data, p=[0.5, 0.3, 0.2])
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    data = (rng.normal(size=(num_data, 3)) * scales[labels]) @ rotation + means[labels]
    return data.astype(dtype), labels


def test_e_step_is_bayes_rule_on_every_datapoint():
    data, _ = sample_mixture(50)
    params = gaussian_mixture.initial_params(KEY, jnp.asarray(data), 3)
    log_responsibilities, mean_log_likelihood = gaussian_mixture.e_step(params, jnp.asarray(data))
    expected = jax.vmap(lambda x: gaussian_mixture.posterior(params, x).logits)(jnp.asarray(data))
    np.testing.assert_allclose(log_responsibilities, expected, atol=2e-4)
    marginals = jax.vmap(lambda x: gaussian_mixture.log_marginal(params, x))(jnp.asarray(data))
    np.testing.assert_allclose(mean_log_likelihood, marginals.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        gaussian_mixture.component_log_probs(params, jnp.asarray(data)),
        jax.vmap(gaussian_mixture.components(params).log_prob)(jnp.asarray(data)),
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.parametrize("covariance_type", gaussian_mixture.COVARIANCE_TYPES)
def test_em_log_likelihood_never_decreases(covariance_type):
    data, _ = sample_mixture()
    _, info = jax.jit(lambda key, x: gaussian_mixture.fit_em(key, x, 4, covariance_type, max_iter=60, tol=0.0))(
        KEY, jnp.asarray(data)
    )
    trace = np.asarray(info.objective)
    assert int(info.num_iterations) == 60 and not np.any(np.isnan(trace))
    assert np.all(np.diff(trace) >= -1e-5), np.diff(trace).min()


def _sklearn_start(params, covariance_type):
    tril = np.asarray(params.scale_tril, np.float64)
    covariances = tril @ np.swapaxes(tril, 1, 2)
    precisions = np.linalg.inv(covariances)
    if covariance_type == "diag":
        precisions = np.diagonal(precisions, axis1=1, axis2=2)
    elif covariance_type == "spherical":
        precisions = precisions[:, 0, 0]
    logits = np.asarray(params.logits, np.float64)
    weights = np.exp(logits - logits.max())
    return {
        "weights_init": weights / weights.sum(),
        "means_init": np.asarray(params.means, np.float64),
        "precisions_init": precisions,
    }


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("covariance_type", gaussian_mixture.COVARIANCE_TYPES)
def test_em_matches_scikit_learn_from_the_same_start(covariance_type, precision):
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    from sklearn.exceptions import ConvergenceWarning

    with jax.enable_x64(precision == "float64"):
        data, _ = sample_mixture(dtype=precision)
        data = jnp.asarray(data)
        start = gaussian_mixture.initial_params(KEY, data, 3, covariance_type)
        params, _ = gaussian_mixture.fit_em(KEY, data, 3, covariance_type, max_iter=20, tol=0.0, init_params=start)
        ours = float(gaussian_mixture.e_step(params, data)[1])
        ours_bic = float(gaussian_mixture.bic(params, data, covariance_type))

    reference = sklearn_mixture.GaussianMixture(
        3,
        covariance_type=covariance_type,
        max_iter=20,
        tol=0.0,
        reg_covar=1e-6,
        **_sklearn_start(start, covariance_type),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 iterations on purpose
        reference.fit(np.asarray(data, np.float64))
    assert reference.n_iter_ == 20
    assert abs(ours - reference.score(np.asarray(data, np.float64))) < 1e-4
    np.testing.assert_allclose(params.means, reference.means_, atol=1e-3)
    assert abs(ours_bic - reference.bic(np.asarray(data, np.float64))) < 1e-4 * 2 * len(data)


def test_parallel_restarts_return_the_best():
    data, _ = sample_mixture()
    data = jnp.asarray(data)
    fit = jax.jit(lambda key: gaussian_mixture.fit_em(key, data, 5, n_init=4, tol=1e-6))
    params, _ = fit(KEY)
    best = float(gaussian_mixture.e_step(params, data)[1])
    for key in jax.random.split(KEY, 4):  # the keys fit_em gives its restarts
        single, _ = gaussian_mixture.fit_em(key, data, 5, tol=1e-6)
        assert best >= float(gaussian_mixture.e_step(single, data)[1]) - 1e-5


def test_em_recovers_well_separated_clusters():
    data, labels = sample_mixture(2000)
    params, info = gaussian_mixture.fit_em(KEY, jnp.asarray(data), 3, n_init=3, tol=1e-6, max_iter=200)
    assert bool(info.converged)
    predicted = np.asarray(jnp.argmax(gaussian_mixture.e_step(params, jnp.asarray(data))[0], axis=1))
    agreement = max(
        np.mean(predicted == np.asarray(perm)[labels]) for perm in __import__("itertools").permutations(range(3))
    )
    assert agreement > 0.97
    np.testing.assert_allclose(np.sort(jax.nn.softmax(params.logits)), [0.2, 0.3, 0.5], atol=0.04)


def test_kmeans_plus_plus_picks_distinct_datapoints():
    data, _ = sample_mixture(100)
    centres = np.asarray(gaussian_mixture.kmeans_plus_plus(KEY, jnp.asarray(data), 5))
    assert len({tuple(row) for row in centres}) == 5
    assert all(any(np.array_equal(centre, row) for row in data) for centre in centres)


def test_a_collapsing_component_stays_finite_and_is_reported():
    rng = np.random.default_rng(1)
    data = np.concatenate([np.zeros((30, 2)), rng.normal(size=(100, 2)) * 2 + 5]).astype(np.float32)
    params, info = gaussian_mixture.fit_em(KEY, jnp.asarray(data), 2, max_iter=50)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(params))
    assert np.isfinite(np.asarray(info.objective)[: int(info.num_iterations)]).all()
    np.testing.assert_array_equal(np.sort(np.asarray(gaussian_mixture.collapsed_components(params))), [False, True])


def test_the_fitted_mixture_is_a_model_of_the_core():
    data, _ = sample_mixture(200)
    params, _ = gaussian_mixture.fit_em(KEY, jnp.asarray(data), 3)
    x = jnp.asarray(data[0])
    np.testing.assert_allclose(
        lvmjax.log_marginal_exact(gaussian_mixture.model, params, x),
        gaussian_mixture.log_marginal(params, x),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_components": 11}, "num_components must be between 1 and the number of datapoints .10., got 11"),
        ({"covariance_type": "tied"}, "covariance_type must be one of full, diag, spherical, got 'tied'"),
        ({"n_init": 0}, "n_init must be at least 1"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    data = jnp.asarray(sample_mixture(10)[0])
    options = {"num_components": 2} | arguments
    with pytest.raises(ValueError, match=message):
        gaussian_mixture.fit_em(KEY, data, **options)


def test_bad_data_is_refused():
    data = np.asarray(sample_mixture(10)[0])
    with pytest.raises(ValueError, match="data must be 2-D"):
        gaussian_mixture.fit_em(KEY, jnp.asarray(data[:, 0]), 2)
    data[3, 1] = np.nan
    with pytest.raises(ValueError, match="data contains non-finite values"):
        gaussian_mixture.fit_em(KEY, jnp.asarray(data), 2)


def _reference_log_probs(params, data):
    """log N(x_i; μ_k, Σ_k) in float64 numpy, from Σ_k = L_k L_kᵀ."""
    tril = np.asarray(params.scale_tril, np.float64)
    deviations = np.asarray(data, np.float64)[:, None, :] - np.asarray(params.means, np.float64)  # (N, K, D)
    whitened = np.linalg.solve(tril[None], deviations[..., None])[..., 0]
    log_det = np.sum(np.log(np.diagonal(tril, axis1=1, axis2=2)), axis=1)
    return -0.5 * (tril.shape[-1] * np.log(2 * np.pi) + np.sum(whitened**2, axis=-1)) - log_det


def _reference_m_step(data, responsibilities, covariance_type, reg_covar=1e-6):
    """The M-step's (N_k, μ_k, Σ_k) in float64 numpy, from the centred sums."""
    data, responsibilities = np.asarray(data, np.float64), np.asarray(responsibilities, np.float64)
    counts = responsibilities.sum(0) + 10 * np.finfo(np.float32).eps
    means = responsibilities.T @ data / counts[:, None]
    centred = data[None] - means[:, None]  # (K, N, D)
    covariances = np.einsum("nk,knd,kne->kde", responsibilities, centred, centred) / counts[:, None, None]
    if covariance_type != "full":
        variances = np.diagonal(covariances, axis1=1, axis2=2)
        if covariance_type == "spherical":
            variances = np.broadcast_to(variances.mean(1, keepdims=True), variances.shape)
        covariances = np.stack([np.diag(v) for v in variances])
    return counts, means, covariances + reg_covar * np.eye(data.shape[1])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])  # "spherical" averages the "diag" variances
def test_e_and_m_steps_in_float32_equal_the_direct_formulas_far_from_the_origin(covariance_type):
    # 1,100 datapoints, 1,000 away from the origin: two blocks of columns that overlap.
    # Five components share a bulk; the sixth holds 20 copies of one point 50 standard
    # deviations of the bulk away from it. Its covariance must come out as reg_covar · I and
    # its log-density there as -D/2 log(2π reg_covar): sums that are not centred on each
    # component's mean (Σ r x xᵀ / N_k - μ μᵀ, or its expansion in the E-step) would miss both
    # by orders of magnitude in float32.
    rng = np.random.default_rng(4)
    bulk = rng.normal(size=(1080, 3))
    data = np.concatenate([bulk, np.tile([40.0, -30.0, 0.0], (20, 1))]) + 1000
    responsibilities = np.zeros((1100, 6))
    responsibilities[:1080, :5] = rng.dirichlet(np.ones(5), size=1080)
    responsibilities[1080:, 5] = 1
    data, log_responsibilities = jnp.asarray(data, jnp.float32), jnp.log(jnp.asarray(responsibilities, jnp.float32))

    params = gaussian_mixture.m_step(data, log_responsibilities, covariance_type)
    counts, means, covariances = _reference_m_step(data, responsibilities, covariance_type)
    tril = np.asarray(params.scale_tril, np.float64)
    np.testing.assert_allclose(np.exp(params.logits) * 1100, counts, rtol=1e-5)
    np.testing.assert_allclose(params.means, means, atol=1e-4)
    np.testing.assert_allclose(tril @ np.swapaxes(tril, 1, 2), covariances, rtol=1e-3, atol=1e-8)
    np.testing.assert_array_equal(gaussian_mixture.collapsed_components(params), [False] * 5 + [True])

    expected = _reference_log_probs(params, data)
    log_probs = gaussian_mixture.component_log_probs(params, data)
    np.testing.assert_allclose(log_probs[:1080, :5], expected[:1080, :5], atol=1e-3)
    np.testing.assert_allclose(log_probs[1080:, 5], -1.5 * np.log(2 * np.pi * 1e-6), rtol=1e-4)
    log_joint = np.asarray(jax.nn.log_softmax(params.logits), np.float64) + expected
    log_likelihood = np.logaddexp.reduce(log_joint, axis=1)
    log_responsibilities, mean_log_likelihood = gaussian_mixture.e_step(params, data)
    np.testing.assert_allclose(np.exp(log_responsibilities), np.exp(log_joint - log_likelihood[:, None]), atol=1e-4)
    np.testing.assert_allclose(mean_log_likelihood, log_likelihood.mean(), rtol=1e-5)

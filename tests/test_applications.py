"""Imputation, clustering quality and anomaly scores against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_gaussian_mixture, make_linear_gaussian
from scipy.stats import multivariate_normal

from lvmjax import applications, gaussian_mixture, linear_gaussian


def partitioned_conditional(mean, covariance, x, observed):
    """The textbook block formula, in float64 numpy."""
    o, m = observed, ~observed
    gain = covariance[np.ix_(m, o)] @ np.linalg.inv(covariance[np.ix_(o, o)])
    imputed = x.copy()
    imputed[m] = mean[m] + gain @ (x[o] - mean[o])
    log_density = multivariate_normal.logpdf(x[o], mean[o], covariance[np.ix_(o, o)]) if o.any() else 0.0
    return log_density, imputed


def test_gaussian_conditional_matches_the_block_formula_for_every_mask():
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(5, 5))
    covariance = factor @ factor.T + np.eye(5)
    mean, x = rng.normal(size=5), rng.normal(size=5)
    for observed in ([True] * 5, [True, False, True, False, False], [False, True, True, True, True]):
        observed = np.array(observed)
        expected_log, expected = partitioned_conditional(mean, covariance, x, observed)
        log_density, imputed = applications.gaussian_conditional(
            jnp.asarray(mean, jnp.float32), jnp.asarray(covariance, jnp.float32), jnp.asarray(x, jnp.float32),
            jnp.asarray(observed))
        np.testing.assert_allclose(imputed, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(log_density, expected_log, rtol=1e-5)


def test_nothing_observed_gives_the_mean_and_log_one():
    params, x = make_gaussian_mixture()
    log_observed, imputed = applications.impute_gaussian_mixture(params, x, jnp.zeros(2, bool))
    np.testing.assert_allclose(log_observed, 0.0, atol=1e-6)
    np.testing.assert_allclose(imputed, jax.nn.softmax(params.logits) @ params.means, rtol=1e-5)


def test_gaussian_mixture_imputation_is_the_mixture_of_conditionals():
    params, _ = make_gaussian_mixture(num_components=3, data_dim=4)
    x = jnp.array([0.3, -1.0, 2.0, 0.5])
    observed = np.array([True, False, True, False])
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    covariances = p.scale_tril @ np.swapaxes(p.scale_tril, 1, 2)
    mixing = np.exp(p.logits) / np.exp(p.logits).sum()
    parts = [partitioned_conditional(p.means[k], covariances[k], np.asarray(x, np.float64), observed)
             for k in range(3)]
    weights = mixing * np.exp([log for log, _ in parts])
    expected = (weights / weights.sum()) @ np.array([imputed for _, imputed in parts])
    log_observed, imputed = applications.impute_gaussian_mixture(params, x, jnp.asarray(observed))
    np.testing.assert_allclose(imputed, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(log_observed, np.log(weights.sum()), rtol=1e-5)


def test_linear_gaussian_imputation_and_full_observation():
    params, x = make_linear_gaussian()
    log_observed, imputed = applications.impute_linear_gaussian(params, x, jnp.ones(4, bool))
    np.testing.assert_allclose(imputed, x)
    np.testing.assert_allclose(log_observed, linear_gaussian.log_marginal(params, x), rtol=1e-5)
    marginal = linear_gaussian.marginal(params)
    observed = np.array([False, True, True, False])
    expected_log, expected = partitioned_conditional(np.asarray(marginal.mean(), np.float64),
                                                     np.asarray(marginal.covariance(), np.float64),
                                                     np.asarray(x, np.float64), observed)
    log_observed, imputed = jax.jit(applications.impute_linear_gaussian)(params, x, jnp.asarray(observed))
    np.testing.assert_allclose(imputed, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(log_observed, expected_log, rtol=1e-5)


def test_a_mask_of_the_wrong_shape_is_refused():
    params, x = make_linear_gaussian()
    with pytest.raises(ValueError, match=r"observed has shape \(3,\), but x has shape \(4,\)"):
        applications.impute_linear_gaussian(params, x, jnp.ones(3, bool))


def test_top_half_missing():
    mask = np.asarray(applications.top_half_missing((8, 8))).reshape(8, 8)
    assert not mask[:4].any() and mask[4:].all()


def test_adjusted_rand_index_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        first, second = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
        second[:120] = first[:120] % 3  # partly agreeing
        assert applications.adjusted_rand_index(first, second) == pytest.approx(
            metrics.adjusted_rand_score(first, second), abs=1e-12)
    assert applications.adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
    with pytest.raises(ValueError, match="must be 1-D and of one length"):
        applications.adjusted_rand_index([0, 1], [0, 1, 1])


def test_anomaly_scores_rank_an_outlier_first():
    params, _ = make_gaussian_mixture()
    data = jnp.stack([params.means[0], params.means[1], params.means[2] + 0.1, jnp.array([40.0, -40.0])])
    scores = applications.anomaly_scores(gaussian_mixture.log_marginal, params, data)
    assert int(jnp.argmax(scores)) == 3
    np.testing.assert_allclose(scores[0], -gaussian_mixture.log_marginal(params, data[0]), rtol=1e-6)
    labels = applications.hard_labels(gaussian_mixture.e_step(params, data)[0])
    assert labels.shape == (4,)

"""Imputation, dimensionality reduction, clustering quality, anomaly scores and the choice of K,
against independent computations."""

import itertools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_stderr, linear_bernoulli_vae, make_gaussian_mixture, make_linear_gaussian
from scipy.linalg import subspace_angles
from scipy.stats import multivariate_normal, norm

import lvmjax
from lvmjax import LatentVariableModel, amortized, applications
from lvmjax.amortized import AmortizedModel
from lvmjax.data import DataError
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian
from lvmjax.variational import VariationalFamily


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
            jnp.asarray(mean, jnp.float32),
            jnp.asarray(covariance, jnp.float32),
            jnp.asarray(x, jnp.float32),
            jnp.asarray(observed),
        )
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
    parts = [partitioned_conditional(p.means[k], covariances[k], np.asarray(x, np.float64), observed) for k in range(3)]
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
    expected_log, expected = partitioned_conditional(
        np.asarray(marginal.mean(), np.float64),
        np.asarray(marginal.covariance(), np.float64),
        np.asarray(x, np.float64),
        observed,
    )
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
            metrics.adjusted_rand_score(first, second), abs=1e-12
        )
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


# --- Imputation under the mixture of Bernoullis and under VAEs ----------------------------


def make_bernoulli_mixture(num_components=3, data_dim=6, seed=3):
    rng = np.random.default_rng(seed)
    params = bernoulli_mixture.Params(
        logits=jnp.asarray(rng.normal(size=num_components), jnp.float32),
        probs_logits=jnp.asarray(2 * rng.normal(size=(num_components, data_dim)), jnp.float32),
    )
    return params, jnp.asarray(rng.random(data_dim) < 0.5, jnp.float32)


def brute_force_bernoulli_imputation(params, x, observed):
    """Sums the joint p(x_o, x_m) over all 2^|m| completions of the missing pixels, in float64."""
    mixing = np.exp(np.asarray(params.logits, np.float64))
    mixing /= mixing.sum()
    probs = 1 / (1 + np.exp(-np.asarray(params.probs_logits, np.float64)))
    missing = np.flatnonzero(~observed)
    total, ones = 0.0, np.zeros(len(x))
    for bits in itertools.product([0.0, 1.0], repeat=len(missing)):
        completion = np.asarray(x, np.float64).copy()
        completion[missing] = bits
        joint = mixing @ np.prod(probs**completion * (1 - probs) ** (1 - completion), axis=1)
        total += joint
        ones += joint * completion
    return np.log(total), np.where(observed, x, ones / total)


def test_bernoulli_mixture_imputation_sums_over_the_missing_pixels():
    params, x = make_bernoulli_mixture()
    masks = np.array(
        [[True] * 6, [False] * 6, [True, False, True, False, False, True], [False, True, True, True, False, True]]
    )
    # Missing entries are ignored, NaN included; one compiled program serves every mask.
    with_nans = jnp.where(jnp.asarray(masks), x, jnp.nan)
    log_observed, imputed = jax.jit(jax.vmap(applications.impute_bernoulli_mixture, in_axes=(None, 0, 0)))(
        params, with_nans, jnp.asarray(masks)
    )
    for i, observed in enumerate(masks):
        expected_log, expected = brute_force_bernoulli_imputation(params, np.asarray(x), observed)
        np.testing.assert_allclose(log_observed[i], expected_log, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(imputed[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(imputed[0], x)
    np.testing.assert_allclose(log_observed[0], bernoulli_mixture.log_marginal(params, x), rtol=1e-6)
    np.testing.assert_allclose(log_observed[1], 0.0, atol=1e-6)  # p(x_o) = 1 for an empty x_o


def posterior_encoder(params, x):
    """A fixed encoder: the exact p(z | x) of the linear-Gaussian model, its scale widened 3 times, so
    that the proposal q(z | x̃) is wider than p(z | x_o) and the weights' variance is finite and small."""
    posterior = linear_gaussian.posterior(params, x)
    return {"mean": posterior.mean(), "scale_tril": 3.0 * jnp.linalg.cholesky(posterior.covariance())}


def test_vae_imputation_converges_to_the_exact_linear_gaussian_conditional():
    """An AmortizedModel around factor analysis, where p(x_o) and E[x_m | x_o] are known exactly."""
    params, x = make_linear_gaussian(noise=1.0)
    family = VariationalFamily(None, lambda phi: distrax.MultivariateNormalTri(phi["mean"], phi["scale_tril"]))
    vae_like = AmortizedModel(linear_gaussian.model, family, posterior_encoder, None, latent_dim=2)
    observed = jnp.array([True, False, True, False])
    exact_log, exact = applications.impute_linear_gaussian(params, x, observed)
    impute = jax.jit(
        jax.vmap(lambda key: applications.impute_vae(key, vae_like, params, x, observed, 4000, fill_value=0.0))
    )
    log_observed, imputed = impute(jax.random.split(jax.random.PRNGKey(0), 16))
    assert_within_stderr(log_observed, exact_log)
    assert_within_stderr(imputed[:, 1::2], exact[1::2])
    np.testing.assert_array_equal(imputed[:, ::2], jnp.broadcast_to(x[::2], (16, 2)))


@pytest.mark.standard_promotion  # blackjax's window adaptation
def test_vae_imputation_by_mcmc_reaches_the_exact_linear_gaussian_conditional():
    """NUTS on p(z | x_o) instead of importance weights: the mean of E[x_m | z_s] over the draws is within 5 Monte
    Carlo standard errors of the exact E[x_m | x_o]; the prior's sd of W_m z bounds the posterior's from above."""
    params, x = make_linear_gaussian(noise=1.0)
    family = VariationalFamily(None, lambda phi: distrax.MultivariateNormalTri(phi["mean"], phi["scale_tril"]))
    vae_like = AmortizedModel(linear_gaussian.model, family, posterior_encoder, None, latent_dim=2)
    observed = jnp.array([True, False, True, False])
    _, exact = applications.impute_linear_gaussian(params, x, observed)
    imputed, info = jax.jit(
        lambda key: applications.impute_vae_mcmc(key, vae_like, params, x, observed, num_samples=500, num_warmup=300)
    )(jax.random.key(0))
    np.testing.assert_array_equal(imputed[::2], x[::2])
    assert float(jnp.max(info.rhat)) < 1.05
    prior_sd = jnp.sqrt(jnp.sum(params.weight[1::2] ** 2, axis=1))
    tolerance = 5 * prior_sd / jnp.sqrt(jnp.min(info.ess))
    assert np.all(np.abs(imputed[1::2] - exact[1::2]) < tolerance), (imputed, exact, tolerance)


def test_vae_imputation_reweights_the_encoders_draws_and_latent_means_are_its_means():
    vae, params = linear_bernoulli_vae()
    data = jnp.asarray(np.random.default_rng(0).random((3, 16)) < 0.5, jnp.float32)
    key, num_samples = jax.random.PRNGKey(1), 64
    observed = jnp.stack([jnp.ones(16, bool), applications.top_half_missing((4, 4)), jnp.arange(16) % 3 == 0])
    x = jnp.where(observed, data, jnp.nan)
    log_observed, imputed = jax.jit(
        jax.vmap(lambda x, mask: applications.impute_vae(key, vae, params, x, mask, num_samples))
    )(x, observed)

    @jax.jit
    def reference(filled):
        """log_marginal_is of the full datapoint, and the draws z_k ~ q(z | x̃) for each filled x̃."""

        def draws(x):
            q = vae.encode(params, x)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_samples))
            return jax.vmap(lambda key_k: q.sample(seed=key_k))(keys), q.mean(), q.stddev()

        full = lvmjax.log_marginal_is(key, vae.model, params, vae.encode(params, data[0]), data[0], num_samples)
        return full.log_marginal, jax.vmap(draws)(filled)

    log_marginal, (latents, means, scales) = reference(jnp.where(observed[1:], data[1:], 0.5))

    # Nothing missing: the importance-sampled log p(x) of log_marginal_is, from the same draws.
    np.testing.assert_allclose(log_observed[0], log_marginal, rtol=1e-5)
    np.testing.assert_array_equal(imputed[0], data[0])

    # A mask: the same draws z_k, reweighted in float64 numpy by p(x_o | z_k) p(z_k) / q(z_k | x̃),
    # with x̃ = 0.5 where missing.
    weight, bias = (np.asarray(a, np.float64) for a in (params["decoder"]["weight"], params["decoder"]["bias"]))
    for i in (1, 2):
        mask, x_o = np.asarray(observed[i]), np.asarray(data[i], np.float64)[np.asarray(observed[i])]
        z = np.asarray(latents[i - 1], np.float64)
        probs = 1 / (1 + np.exp(-(z @ weight.T + bias)))
        log_weights = (
            np.sum(x_o * np.log(probs[:, mask]) + (1 - x_o) * np.log1p(-probs[:, mask]), axis=1)
            + norm.logpdf(z).sum(1)
            - norm.logpdf(z, means[i - 1], scales[i - 1]).sum(1)
        )
        weights = np.exp(log_weights - log_weights.max())
        np.testing.assert_allclose(log_observed[i], np.log(weights.mean()) + log_weights.max(), rtol=1e-5)
        expected = np.where(mask, data[i], weights @ probs / weights.sum())
        np.testing.assert_allclose(imputed[i], expected, rtol=1e-4, atol=1e-6)

    # Dimensionality reduction: the encoder's mean.
    codes = applications.latent_means(vae.encode, params, data)
    np.testing.assert_allclose(codes, jax.vmap(lambda x: amortized.encode_mean(vae, params, x))(data), rtol=1e-6)


def test_imputation_needs_a_likelihood_that_factorizes():
    params, x = make_linear_gaussian()
    model = LatentVariableModel(
        linear_gaussian.prior, lambda params, z: distrax.MultivariateNormalFullCovariance(params.weight @ z, jnp.eye(4))
    )
    family = VariationalFamily(None, lambda phi: distrax.MultivariateNormalDiag(phi, jnp.ones(2)))
    vae_like = AmortizedModel(model, family, lambda params, x: jnp.zeros(2), None, latent_dim=2)
    with pytest.raises(TypeError, match="factorizes over the entries of x"):
        jax.jit(lambda x: applications.impute_vae(jax.random.PRNGKey(0), vae_like, params, x, jnp.ones(4, bool), 4))(x)


# --- Dimensionality reduction -------------------------------------------------------------


def test_ppca_latent_means_are_the_closed_form_and_span_the_principal_subspace():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 5)) * np.array([3.0, 2.0, 1.0, 0.5, 0.3]) @ np.linalg.qr(rng.normal(size=(5, 5)))[0]
    params = linear_gaussian.fit_ppca(jnp.asarray(data, jnp.float32), 2)
    codes = jax.jit(applications.latent_means, static_argnums=0)(
        linear_gaussian.posterior, params, jnp.asarray(data, jnp.float32)
    )
    codes = np.asarray(codes, np.float64)
    weight, bias = np.asarray(params.weight, np.float64), np.asarray(params.bias, np.float64)
    m_matrix = weight.T @ weight + float(params.noise_variance) * np.eye(2)  # M = WᵀW + σ²I
    np.testing.assert_allclose(codes, np.linalg.solve(m_matrix, weight.T @ (data - bias).T).T, rtol=1e-4, atol=1e-4)
    scores = decomposition.PCA(2).fit(data).transform(data)
    assert np.max(subspace_angles(codes, scores)) < 1e-4


# --- Choosing the number of components ----------------------------------------------------


@pytest.fixture(scope="module")
def three_gaussian_clusters():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])

    def draw(num):
        return jnp.asarray(means[rng.integers(0, 3, num)] + rng.normal(size=(num, 2)) * [1.0, 0.6], jnp.float32)

    return draw(300), draw(300)


def gaussian_mixture_log_likelihoods(params, data):
    """log p(x_i; θ) of every row, in float64 scipy."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    mixing = np.exp(p.logits) / np.exp(p.logits).sum()
    densities = [
        multivariate_normal.pdf(np.asarray(data, np.float64), p.means[k], p.scale_tril[k] @ p.scale_tril[k].T)
        for k in range(len(mixing))
    ]
    return np.log(mixing @ np.array(densities))


def test_bic_chooses_the_three_components_of_a_gaussian_mixture(three_gaussian_clusters):
    train, test = three_gaussian_clusters
    # Two neighbours of the truth (one compiled EM per K keeps the candidates few): K = 2 underfits,
    # K = 4 fits the training data better but not by enough to pay BIC's penalty.
    selection = applications.select_gaussian_mixture(jax.random.PRNGKey(0), train, test, range(2, 5))
    np.testing.assert_array_equal(selection.candidates, [2, 3, 4])
    assert int(selection.num_components_by_bic) == 3
    for i, params in enumerate(selection.params):
        num_components = i + 2
        num_free = num_components - 1 + num_components * 2 + num_components * 3
        bic = -2 * gaussian_mixture_log_likelihoods(params, train).sum() + num_free * np.log(300)
        np.testing.assert_allclose(selection.bic[i], bic, rtol=1e-5)
        np.testing.assert_allclose(
            selection.train_log_likelihood[i], gaussian_mixture_log_likelihoods(params, train).mean(), rtol=1e-5
        )
        np.testing.assert_allclose(
            selection.test_log_likelihood[i], gaussian_mixture_log_likelihoods(params, test).mean(), rtol=1e-5
        )
    assert int(selection.num_components_by_test) == 2 + int(np.argmax(selection.test_log_likelihood))
    assert selection.test_log_likelihood[1] > selection.test_log_likelihood[0] + 0.1  # underfitting costs


def test_bic_chooses_the_three_prototypes_of_binary_data():
    rng = np.random.default_rng(1)
    prototypes = rng.random((3, 12)) < 0.5

    def draw(num):
        return jnp.asarray(prototypes[rng.integers(0, 3, num)] ^ (rng.random((num, 12)) < 0.1), jnp.float32)

    train, test = draw(200), draw(200)
    selection = applications.select_bernoulli_mixture(jax.random.PRNGKey(0), train, test, [3, 4])
    assert int(selection.num_components_by_bic) == 3  # K = 4 overfits
    for i, params in enumerate(selection.params):
        num_components = i + 3
        mixing = np.asarray(jax.nn.softmax(params.logits), np.float64)
        probs = 1 / (1 + np.exp(-np.asarray(params.probs_logits, np.float64)))

        def log_likelihoods(data, mixing=mixing, probs=probs):
            data = np.asarray(data, np.float64)
            return np.log(np.exp(data @ np.log(probs).T + (1 - data) @ np.log1p(-probs).T) @ mixing)

        bic = -2 * log_likelihoods(train).sum() + (num_components - 1 + num_components * 12) * np.log(200)
        np.testing.assert_allclose(selection.bic[i], bic, rtol=1e-5)
        np.testing.assert_allclose(selection.train_log_likelihood[i], log_likelihoods(train).mean(), rtol=1e-5)
        np.testing.assert_allclose(selection.test_log_likelihood[i], log_likelihoods(test).mean(), rtol=1e-5)


def test_model_selection_refuses_bad_arguments(three_gaussian_clusters):
    train, test = three_gaussian_clusters
    with pytest.raises(ValueError, match="candidates is empty"):
        applications.select_gaussian_mixture(jax.random.PRNGKey(0), train, test, [])
    with pytest.raises(ValueError, match="test has D=1 columns but train has D=2"):
        applications.select_gaussian_mixture(jax.random.PRNGKey(0), train, test[:, :1], [2])
    with pytest.raises(ValueError, match="num_components must be between 1 and the number of datapoints"):
        applications.select_gaussian_mixture(jax.random.PRNGKey(0), train, test, [2, 301])
    with pytest.raises(DataError, match="not 0 or 1"):
        applications.select_bernoulli_mixture(jax.random.PRNGKey(0), jnp.ones((4, 3)), jnp.full((4, 3), 0.5), [1])

"""MAP-EM for the Gaussian mixture under Fraley & Raftery's conjugate prior: the M-step is the exact posterior
mode, the log posterior never decreases, the prior's weight vanishes with the data, and a component that
maximum likelihood lets collapse onto a repeated point stays spread."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lvmjax.errors import ArgumentError
from lvmjax.models import gaussian_mixture

KEY = jax.random.key(0)
TYPES = gaussian_mixture.COVARIANCE_TYPES


def two_clusters_and_a_repeated_point(seed=0, dtype=np.float64):
    """200 + 150 points of two Gaussian clusters in 3-D, and one point far from both, repeated 4 times: the
    classic spurious maximum of a mixture's likelihood, a component on the 4 copies with variance -> 0."""
    rng = np.random.default_rng(seed)
    repeated = np.repeat(np.array([[-6.0, 5.0, -4.0]]), 4, axis=0)
    data = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 4.0, repeated])
    return data.astype(dtype)


def tied_scale_tril(params, covariance_type):
    """Only the entries of L_k that the covariance type leaves free: the lower triangle, the diagonal, or
    one shared diagonal value."""
    if covariance_type == "full":
        return params
    diagonal = jnp.diagonal(params.scale_tril, axis1=1, axis2=2)
    if covariance_type == "spherical":
        diagonal = jnp.broadcast_to(diagonal[:, :1], diagonal.shape)
    return params._replace(scale_tril=jax.vmap(jnp.diag)(diagonal))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_m_step_is_the_stationary_point_of_the_expected_log_posterior(covariance_type):
    """∇_θ [Σ_i Σ_k r_ik log p(x_i, z = k; θ) + log p(θ)] = 0 at the MAP M-step, for the free entries of θ."""
    with jax.enable_x64(True):
        data = jnp.asarray(two_clusters_and_a_repeated_point())
        prior = gaussian_mixture.default_prior(data, 3, covariance_type)._replace(
            weight_concentration=jnp.asarray(2.5)  # a Dirichlet that is not flat, so π's update is tested too
        )
        start = gaussian_mixture.initial_params(KEY, data, 3, covariance_type, prior=prior)
        log_responsibilities, _ = gaussian_mixture.e_step(start, data)
        responsibilities = jnp.exp(log_responsibilities)
        new = gaussian_mixture.m_step(data, log_responsibilities, covariance_type, prior=prior)

        def expected_log_posterior(params):
            params = tied_scale_tril(params, covariance_type)
            log_joint = gaussian_mixture.component_log_probs(params, data) + jax.nn.log_softmax(params.logits)
            return jnp.sum(responsibilities * log_joint) + gaussian_mixture.log_prior(params, prior, covariance_type)

        gradient = jax.grad(expected_log_posterior)(new)
        scale = float(data.shape[0])
        np.testing.assert_allclose(gradient.logits / scale, 0.0, atol=1e-10)
        np.testing.assert_allclose(gradient.means / scale, 0.0, atol=1e-10)
        np.testing.assert_allclose(jnp.tril(gradient.scale_tril) / scale, 0.0, atol=1e-10)
        # and a maximum, not a saddle: every small move of the free entries lowers it
        best = expected_log_posterior(new)
        for key in jax.random.split(jax.random.key(1), 8):
            move = jax.tree.map(lambda leaf, k=key: 1e-3 * jax.random.normal(k, leaf.shape), new)
            moved = jax.tree.map(jnp.add, new, move._replace(scale_tril=jnp.tril(move.scale_tril)))
            assert expected_log_posterior(moved) < best


@pytest.mark.parametrize("covariance_type", TYPES)
def test_map_em_never_decreases_the_log_posterior(covariance_type):
    data = jnp.asarray(two_clusters_and_a_repeated_point(dtype=np.float32))
    prior = gaussian_mixture.default_prior(data, 4, covariance_type)
    _, info = gaussian_mixture.fit_em(KEY, data, 4, covariance_type, max_iter=60, tol=0.0, prior=prior)
    trace = np.asarray(info.objective)
    assert int(info.num_iterations) == 60 and np.all(np.isfinite(trace))
    # float32 rounding of an objective of about -5 per datapoint, not a decrease
    assert np.all(np.diff(trace) >= -4 * np.finfo(np.float32).eps * np.abs(trace[1:])), np.diff(trace).min()
    assert trace[-1] > trace[0]


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_objective_is_the_log_likelihood_plus_the_log_prior_per_datapoint(covariance_type):
    with jax.enable_x64(True):
        data = jnp.asarray(two_clusters_and_a_repeated_point())
        prior = gaussian_mixture.default_prior(data, 3, covariance_type)
        start = gaussian_mixture.initial_params(KEY, data, 3, covariance_type, prior=prior)
        _, info = gaussian_mixture.fit_em(KEY, data, 3, covariance_type, max_iter=1, init_params=start, prior=prior)
        log_likelihood = jnp.sum(jax.vmap(gaussian_mixture.log_marginal, in_axes=(None, 0))(start, data))
        expected = (log_likelihood + gaussian_mixture.log_prior(start, prior, covariance_type)) / data.shape[0]
        np.testing.assert_allclose(info.objective[0], expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_prior_weighs_less_as_the_data_grow_and_map_em_tends_to_em(covariance_type):
    """The data repeated r times has the same maximum-likelihood θ; the prior's pull on the MAP θ falls as 1/r."""
    with jax.enable_x64(True):
        base = two_clusters_and_a_repeated_point()[:350]  # the two clusters only
        start = gaussian_mixture.initial_params(KEY, jnp.asarray(base), 2, covariance_type)
        distances = []
        for repeats in (1, 10, 100):
            data = jnp.asarray(np.tile(base, (repeats, 1)))
            prior = gaussian_mixture.default_prior(data, 2, covariance_type)
            options = dict(max_iter=200, tol=1e-12, init_params=start, reg_covar=0.0)
            em, _ = gaussian_mixture.fit_em(KEY, data, 2, covariance_type, **options)
            map_em, _ = gaussian_mixture.fit_em(KEY, data, 2, covariance_type, prior=prior, **options)
            distances.append(max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(em, map_em, strict=True)))
        assert distances[0] > 1e-3  # the prior matters on 350 points
        np.testing.assert_allclose(np.array(distances[1:]) / np.array(distances[:-1]), 0.1, rtol=0.1)


def start_on_the_copies(data, covariance_type):
    """θ_0 of the M-step on the hard assignments cluster 1, cluster 2, the copies."""
    labels = np.repeat([0, 1, 2], [200, 150, 4])
    hard = jnp.log(jax.nn.one_hot(jnp.asarray(labels), 3, dtype=data.dtype))
    return gaussian_mixture.m_step(data, hard, covariance_type)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_collapses_onto_the_repeated_point_and_map_em_does_not(covariance_type):
    data = jnp.asarray(two_clusters_and_a_repeated_point(dtype=np.float32))
    start = start_on_the_copies(data, covariance_type)
    em, _ = gaussian_mixture.fit_em(KEY, data, 3, covariance_type, init_params=start)
    collapsed = np.asarray(gaussian_mixture.collapsed_components(em))
    assert collapsed.tolist() == [False, False, True]
    # the collapsed component holds the 4 copies, its smallest variance held up by reg_covar alone
    assert np.isclose(float(jax.nn.softmax(em.logits)[2]), 4 / data.shape[0], rtol=1e-3)
    prior = gaussian_mixture.default_prior(data, 3, covariance_type)
    for options in (dict(init_params=start), dict(n_init=10)):
        map_em, _ = gaussian_mixture.fit_em(KEY, data, 3, covariance_type, prior=prior, **options)
        assert not np.any(gaussian_mixture.collapsed_components(map_em))
        variances = jnp.diagonal(map_em.scale_tril, axis1=1, axis2=2) ** 2
        assert float(jnp.min(variances)) > 0.05  # the prior's scale, not 1e-6


@pytest.mark.parametrize("covariance_type", TYPES)
def test_restarts_never_prefer_a_collapsed_maximum_to_a_sound_one(covariance_type):
    """The copies' spurious maximum has the higher likelihood; among restarts, the best sound one is chosen."""
    data = jnp.asarray(two_clusters_and_a_repeated_point(dtype=np.float32))
    keys = jax.random.split(KEY, 10)  # fit_em's restarts start from these ten keys' k-means++ starts
    starts = [gaussian_mixture.initial_params(key, data, 3, covariance_type) for key in keys]
    fits = [gaussian_mixture.fit_em(KEY, data, 3, covariance_type, init_params=start) for start in starts]
    degenerate = [bool(np.any(gaussian_mixture.collapsed_components(params))) for params, _ in fits]
    assert any(degenerate) and not all(degenerate)  # both kinds among the ten starts

    def final(fit):  # the mean log-likelihood at the restart's last θ, by which restarts are compared
        return float(gaussian_mixture.e_step(fit[0], data)[1])

    best_sound = max((fit for fit, bad in zip(fits, degenerate, strict=True) if not bad), key=final)
    assert max(final(fit) for fit, bad in zip(fits, degenerate, strict=True) if bad) > final(best_sound)
    params, info = gaussian_mixture.fit_em(KEY, data, 3, covariance_type, n_init=10)
    assert not np.any(gaussian_mixture.collapsed_components(params))
    np.testing.assert_allclose(final((params, info)), final(best_sound), rtol=1e-5)


def test_default_prior_is_fraley_and_raftery():
    data = two_clusters_and_a_repeated_point()
    num_components, data_dim = 3, data.shape[1]
    covariance = np.cov(data, rowvar=False)
    with jax.enable_x64(True):
        full = gaussian_mixture.default_prior(jnp.asarray(data), num_components, "full")
        diag = gaussian_mixture.default_prior(jnp.asarray(data), num_components, "diag")
        spherical = gaussian_mixture.default_prior(jnp.asarray(data), num_components, "spherical")
    np.testing.assert_allclose(full.mean, data.mean(axis=0), rtol=1e-12)
    assert float(full.mean_precision) == 0.01 and float(full.degrees_of_freedom) == data_dim + 2
    assert float(full.weight_concentration) == 1.0
    np.testing.assert_allclose(full.scale, covariance / num_components ** (2 / data_dim), rtol=1e-12)
    spread = np.trace(covariance) / data_dim / num_components ** (2 / data_dim)
    np.testing.assert_allclose(diag.scale, np.full(data_dim, spread), rtol=1e-12)
    np.testing.assert_allclose(spherical.scale, spread, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_prior_is_scipys_density(covariance_type):
    with jax.enable_x64(True):
        data = jnp.asarray(two_clusters_and_a_repeated_point())
        prior = gaussian_mixture.default_prior(data, 3, covariance_type)._replace(weight_concentration=jnp.asarray(1.7))
        params = gaussian_mixture.initial_params(KEY, data, 3, covariance_type, prior=prior)
        value = float(gaussian_mixture.log_prior(params, prior, covariance_type))
        weights = np.asarray(jax.nn.softmax(params.logits))
    means, scale_tril = np.asarray(params.means), np.asarray(params.scale_tril)
    mu, kappa, nu, scale = (np.asarray(field) for field in prior[:4])
    expected = stats.dirichlet(np.full(3, 1.7)).logpdf(weights)
    for mean, factor in zip(means, scale_tril, strict=True):
        covariance = factor @ factor.T
        expected += stats.multivariate_normal(mu, covariance / kappa).logpdf(mean)
        if covariance_type == "full":
            expected += stats.invwishart(df=float(nu), scale=scale).logpdf(covariance)
        elif covariance_type == "diag":
            expected += stats.invgamma(nu / 2, scale=scale / 2).logpdf(np.diag(covariance)).sum()
        else:
            expected += stats.invgamma(nu / 2, scale=scale / 2).logpdf(covariance[0, 0])
    np.testing.assert_allclose(value, expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(degrees_of_freedom=2.0), "degrees_of_freedom must be greater than 2"),
        (dict(degrees_of_freedom=-1.0), "degrees_of_freedom"),
        (dict(mean_precision=0.0), "mean_precision must be positive"),
        (dict(weight_concentration=0.5), "weight_concentration must be at least 1"),
        (dict(mean=np.zeros(2)), r"prior.mean must have shape \(3,\)"),
        (dict(scale=-np.eye(3)), "positive definite"),
        (dict(scale=np.eye(2)), r"prior.scale must have shape \(3, 3\)"),
    ],
)
def test_an_improper_prior_is_refused_by_name(change, message):
    data = jnp.asarray(two_clusters_and_a_repeated_point(dtype=np.float32))
    prior = gaussian_mixture.default_prior(data, 3)
    with pytest.raises(ArgumentError, match=message):
        gaussian_mixture.fit_em(KEY, data, 3, prior=prior._replace(**change))


def test_a_diagonal_prior_refuses_a_non_positive_scale():
    data = jnp.asarray(two_clusters_and_a_repeated_point(dtype=np.float32))
    prior = gaussian_mixture.default_prior(data, 3, "diag")
    with pytest.raises(ArgumentError, match=r"prior\.scale must be positive"):
        gaussian_mixture.fit_em(KEY, data, 3, "diag", prior=prior._replace(scale=jnp.zeros(3)))
    with pytest.raises(ArgumentError, match="prior must be a ConjugatePrior"):
        gaussian_mixture.fit_em(KEY, data, 3, "diag", prior={"mean": 0})

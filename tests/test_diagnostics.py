"""Latent-space diagnostics against exact answers: encoders whose outputs we set, closed-form KLs, and the
two cases of I(x; z) that are known, posteriors that do not overlap (log N) and identical ones (0)."""

import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvmjax
from lvmjax import amortized, diagnostics, variational
from lvmjax.errors import ArgumentTypeError

active_units = jax.jit(diagnostics.active_units, static_argnums=(1,), static_argnames=("num_samples",))
kl_per_dimension = jax.jit(diagnostics.kl_per_dimension, static_argnums=(0,))
rate_distortion = jax.jit(diagnostics.rate_distortion, static_argnums=(1,), static_argnames=("num_samples",))
mutual_information = jax.jit(diagnostics.mutual_information, static_argnums=(1,), static_argnames=("num_samples",))

LOG_SCALE = np.array([-1.0, 0.0, 0.5], np.float32)


@pytest.fixture(scope="module")
def vae():
    return amortized.make_vae(6, 3, hidden=(8,))


@pytest.fixture(scope="module")
def params(vae):
    return vae.init(jax.random.key(0))


@pytest.fixture(scope="module")
def data():
    return jnp.asarray(np.random.default_rng(0).normal(size=(8, 6)), jnp.float32)


def _set_means(params, x):
    """q(z | x) = N((x_0, 0, 2 x_1), diag(exp(LOG_SCALE))²): dimensions 0 and 2 follow x, dimension 1 does not."""
    return {"mean": jnp.stack([x[0], jnp.zeros_like(x[0]), 2 * x[1]]), "log_scale": jnp.asarray(LOG_SCALE)}


@pytest.fixture(scope="module")
def controlled(vae):
    return vae._replace(encoder_output=_set_means)


class _ForwardOnly(distrax.Bijector):
    """The identity, but without an inverse: like an IAF, q gives log q of its own samples only."""

    def __init__(self):
        super().__init__(event_ndims_in=1)

    def forward_and_log_det(self, x):
        return x, jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_and_log_det(self, y):
        raise NotImplementedError("this bijector has no inverse")


def _with_distribution(vae, distribution, encoder_output):
    return amortized.AmortizedModel(
        vae.model, variational.VariationalFamily(None, distribution), encoder_output, None, 3
    )


def test_active_units_are_the_dimensions_the_mean_varies_along(controlled, params, data):
    result = active_units(jax.random.key(1), controlled, params, data)
    x = np.asarray(data)
    expected = np.array([np.var(x[:, 0]), 0.0, 4 * np.var(x[:, 1])])  # population variances (ddof = 0)
    np.testing.assert_allclose(result.variances, expected, rtol=1e-5)
    np.testing.assert_array_equal(result.active, [True, False, True])
    assert result.num_active.dtype == jnp.int32 and int(result.num_active) == 2
    threshold = float(np.sqrt(expected[0] * expected[2]))  # between the two variances: only the larger is active
    higher = active_units(jax.random.key(1), controlled, params, data, threshold)
    np.testing.assert_array_equal(higher.active, expected > threshold)
    assert int(higher.num_active) == 1


def test_active_units_of_a_flow_average_its_samples(vae, params, data):
    """tanh(N(m(x), 10⁻¹² I)) has no closed-form mean in distrax, but its draws are all within 10⁻⁶ of tanh(m(x))."""

    def distribution(phi):
        base = distrax.MultivariateNormalDiag(phi["mean"], jnp.full(3, 1e-6, jnp.float32))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), 1))

    flow = _with_distribution(vae, distribution, _set_means)
    with pytest.raises(NotImplementedError):
        flow.encode(params, data[0]).mean()
    result = active_units(jax.random.key(1), flow, params, data, num_samples=4)
    x = np.asarray(data, np.float64)
    expected = np.var(np.tanh(np.stack([x[:, 0], 0 * x[:, 0], 2 * x[:, 1]], axis=1)), axis=0)
    np.testing.assert_allclose(result.variances, expected, rtol=1e-4, atol=1e-10)
    assert int(result.num_active) == 2


def test_kl_per_dimension_is_the_closed_form_and_sums_to_the_kl(vae, params, data):
    kl = kl_per_dimension(vae, params, data)
    outputs = jax.vmap(vae.encoder_output, in_axes=(None, 0))(params, data)
    mean, log_scale = np.asarray(outputs["mean"], np.float64), np.asarray(outputs["log_scale"], np.float64)
    # KL(N(μ, σ²) ‖ N(0, 1)) = −log σ + (σ² + μ²) / 2 − 1/2, per dimension
    expected = np.mean(-log_scale + (np.exp(2 * log_scale) + mean**2) / 2 - 0.5, axis=0)
    assert kl.shape == (3,)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-7)
    total = jax.vmap(lambda x: vae.encode(params, x).kl_divergence(vae.model.prior(params)))(data)
    np.testing.assert_allclose(jnp.sum(kl), jnp.mean(total), rtol=1e-5, atol=1e-7)


def test_kl_per_dimension_refuses_a_q_that_does_not_factorize(vae, params, data):
    full_rank = vae._replace(
        family=variational.full_rank_gaussian(3),
        encoder_output=lambda params, x: {"mean": x[:3], "log_diag": jnp.zeros(3), "off_diag": jnp.ones((3, 3))},
    )
    with pytest.raises(ArgumentTypeError, match=r"MultivariateNormalDiag, got MultivariateNormalTri.*per latent"):
        kl_per_dimension(full_rank, params, data)


def test_rate_is_the_mean_kl_within_its_standard_error(controlled, params, data):
    num_samples = 2000
    key = jax.random.key(2)
    result = rate_distortion(key, controlled, params, data, num_samples=num_samples)
    np.testing.assert_array_equal(result.elbo, -(result.rate + result.distortion))

    # Per draw, log q(z | x) − log p(z) = Σ_u [−log σ_u − ε_u² / 2 + z_u² / 2] with z = μ + σ ε.
    means = np.asarray(jax.vmap(lambda x: _set_means(None, x)["mean"])(data), np.float64)  # (N, d)
    scale = np.exp(LOG_SCALE.astype(np.float64))
    noise = np.random.default_rng(3).normal(size=(num_samples, *means.shape))
    log_ratios = np.sum(-np.log(scale) - noise**2 / 2 + (means + scale * noise) ** 2 / 2, axis=-1)  # (K, N)
    # The rate is the mean over N datapoints of K-sample means, independent across datapoints.
    stderr = np.sqrt(np.sum(np.var(log_ratios, axis=0, ddof=1) / num_samples)) / means.shape[0]
    exact = float(jnp.sum(kl_per_dimension(controlled, params, data)))
    assert abs(float(result.rate) - exact) < 4 * stderr, (float(result.rate), exact, stderr)

    # Same draws as lvmjax.elbo with the key fold_in(key, i) for datapoint i.
    elbos = jax.jit(
        jax.vmap(
            lambda i, x: lvmjax.elbo(
                jax.random.fold_in(key, i), controlled.model, params, controlled.encode(params, x), x, num_samples
            )
        )
    )(jnp.arange(data.shape[0]), data)
    np.testing.assert_allclose(result.elbo, jnp.mean(elbos), rtol=1e-5)


def test_rate_needs_only_the_log_density_of_its_own_samples(vae, params, data):
    def distribution(phi):
        return distrax.Transformed(
            distrax.MultivariateNormalDiag(phi["mean"], jnp.exp(phi["log_scale"])), _ForwardOnly()
        )

    forward_only = _with_distribution(vae, distribution, _set_means)
    result = rate_distortion(jax.random.key(4), forward_only, params, data, num_samples=2)
    assert np.isfinite(float(result.rate)) and np.isfinite(float(result.distortion))
    with pytest.raises(NotImplementedError, match="this bijector has no inverse"):
        mutual_information(jax.random.key(4), forward_only, params, data)


def test_mutual_information_of_posteriors_that_do_not_overlap_is_log_n(vae, params):
    """q(z | x) = N(±50·1, I) for two datapoints: q(z) is a mixture of two separate modes, and I = log 2."""
    far_apart = vae._replace(
        encoder_output=lambda params, x: {"mean": jnp.full(3, 50.0) * x[0], "log_scale": jnp.zeros(3)}
    )
    data = jnp.asarray([[1.0] * 6, [-1.0] * 6])
    result = mutual_information(jax.random.key(5), far_apart, params, data, num_samples=4)
    np.testing.assert_allclose(result.estimate, math.log(2), atol=1e-6)
    np.testing.assert_allclose(result.upper_bound, math.log(2), rtol=1e-7)
    assert float(result.estimate) <= float(result.upper_bound)


def test_mutual_information_of_identical_posteriors_is_zero(vae, params, data):
    same = vae._replace(encoder_output=lambda params, x: {"mean": jnp.full(3, 0.3), "log_scale": jnp.full(3, -0.2)})
    result = mutual_information(jax.random.key(6), same, params, data[:5], num_samples=3)
    np.testing.assert_allclose(result.estimate, 0.0, atol=1e-6)
    np.testing.assert_allclose(result.upper_bound, math.log(5), rtol=1e-7)
    assert float(result.estimate) <= float(result.upper_bound)


def test_mutual_information_is_at_most_log_n_and_the_rate(controlled, params, data):
    """E_x KL(q(z | x) ‖ p(z)) = I(x; z) + KL(q(z) ‖ p(z)) ≥ I(x; z) (Hoffman & Johnson 2016)."""
    result = mutual_information(jax.random.key(7), controlled, params, data, num_samples=8)
    assert 0.0 < float(result.estimate) <= float(result.upper_bound) == pytest.approx(math.log(8))
    assert float(result.estimate) < float(jnp.sum(kl_per_dimension(controlled, params, data)))

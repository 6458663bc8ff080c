"""The reference models and `log_joint` against independent closed forms (numpy and scipy)."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make_gaussian_mixture, make_linear_gaussian
from scipy.stats import multivariate_normal

import lvmjax
from lvmjax.models import gaussian_mixture, linear_gaussian


def as64(tree):
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, np.float64), tree)


# --- log_joint --------------------------------------------------------------------------


def test_log_joint_is_log_prior_plus_log_likelihood(linear_gaussian_setup):
    params, x = linear_gaussian_setup
    z = jnp.array([0.3, -1.1])
    p = as64(params)
    expected = multivariate_normal.logpdf(
        np.asarray(z, np.float64), np.zeros(2), np.eye(2)
    ) + multivariate_normal.logpdf(
        np.asarray(x, np.float64), p.weight @ np.asarray(z, np.float64) + p.bias, np.diag(p.noise_variance)
    )
    np.testing.assert_allclose(lvmjax.log_joint(linear_gaussian.model, params, x, z), expected, rtol=1e-5)
    np.testing.assert_allclose(
        lvmjax.log_likelihood(linear_gaussian.model, params, x, z) + linear_gaussian.prior(params).log_prob(z),
        expected,
        rtol=1e-5,
    )


# --- Linear-Gaussian model --------------------------------------------------------------


@pytest.mark.parametrize("noise", ["diagonal", "isotropic", "tiny", "tiny, far out"])
def test_linear_gaussian_marginal_matches_numpy(noise):
    """Against float64 scipy, also where W Wᵀ + Ψ is ill-conditioned (Ψ = 10⁻⁶ I, 6 × 2) and x lies
    1000 units off: a float32 Cholesky of that covariance is 5% off, the closed form to rounding."""
    params, x = make_linear_gaussian(data_dim=6)
    if noise == "isotropic":  # probabilistic PCA: one σ² for every dimension
        params = params._replace(noise_variance=jnp.asarray(0.4, jnp.float32))
    if noise.startswith("tiny"):
        params = params._replace(noise_variance=jnp.full(6, 1e-6, jnp.float32))
        x = x + (1000.0 if "far" in noise else 0.3)
    p = as64(params)
    covariance = p.weight @ p.weight.T + np.diag(np.broadcast_to(p.noise_variance, p.bias.shape))
    expected = multivariate_normal.logpdf(np.asarray(x, np.float64), p.bias, covariance)
    ours = jax.jit(linear_gaussian.log_marginal)(params, x)
    np.testing.assert_allclose(ours, expected, rtol=2e-6)


def test_linear_gaussian_posterior_is_bayes_rule(linear_gaussian_setup):
    """log p(z | x) = log p(x, z) - log p(x) at any z."""
    params, x = linear_gaussian_setup
    posterior = linear_gaussian.posterior(params, x)
    log_marginal = linear_gaussian.log_marginal(params, x)
    for z in (jnp.zeros(2), jnp.array([1.0, -2.0]), posterior.mean()):
        np.testing.assert_allclose(
            posterior.log_prob(z),
            lvmjax.log_joint(linear_gaussian.model, params, x, z) - log_marginal,
            rtol=1e-4,
            atol=1e-4,
        )


def test_linear_gaussian_exact_elbo_matches_numerical_integration():
    """E_q[log p(x | z)] by Gauss-Hermite quadrature in one latent dimension."""
    params, x = make_linear_gaussian(latent_dim=1)
    q = distrax.MultivariateNormalDiag(jnp.array([0.4]), jnp.array([0.7]))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)  # ∫ f(t) exp(-t²/2) dt
    z = 0.4 + 0.7 * nodes
    log_likelihoods = np.array(
        [float(lvmjax.log_likelihood(linear_gaussian.model, params, x, jnp.array([value], jnp.float32))) for value in z]
    )
    expected_log_likelihood = np.sum(weights * log_likelihoods) / np.sqrt(2 * np.pi)
    kl = np.log(1 / 0.7) + (0.7**2 + 0.4**2) / 2 - 0.5
    np.testing.assert_allclose(linear_gaussian.exact_elbo(params, q, x), expected_log_likelihood - kl, rtol=1e-5)


# --- Gaussian mixture -------------------------------------------------------------------


def test_gaussian_mixture_marginal_and_responsibilities_match_numpy():
    params, x = make_gaussian_mixture()
    p = as64(params)
    mixing = np.exp(p.logits) / np.exp(p.logits).sum()
    densities = np.array(
        [
            multivariate_normal.pdf(np.asarray(x, np.float64), p.means[k], p.scale_tril[k] @ p.scale_tril[k].T)
            for k in range(3)
        ]
    )
    np.testing.assert_allclose(gaussian_mixture.log_marginal(params, x), np.log(mixing @ densities), rtol=1e-5)
    responsibilities = mixing * densities / (mixing @ densities)
    np.testing.assert_allclose(gaussian_mixture.posterior(params, x).probs, responsibilities, rtol=1e-5)


def test_gaussian_mixture_samples_follow_the_generative_process(gaussian_mixture_setup):
    """The mean of x under z ~ Categorical(π), x | z ~ N(μ_z, Σ_z) is Σ_k π_k μ_k."""
    params, _ = gaussian_mixture_setup

    def draw(key):
        key_z, key_x = jax.random.split(key)
        z = gaussian_mixture.prior(params).sample(seed=key_z)
        return gaussian_mixture.likelihood(params, z).sample(seed=key_x)

    samples = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.PRNGKey(0), 20000))
    expected = jax.nn.softmax(params.logits) @ params.means
    np.testing.assert_allclose(samples.mean(0), expected, atol=4 * float(samples.std(0).max()) / np.sqrt(20000))

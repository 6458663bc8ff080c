"""Extreme but valid input: tiny variances, datapoints far out, K = 1 and K = 100,000 samples.

Every result must be finite and right: against closed forms (linear_gaussian.log_marginal is checked
against float64 scipy), exact enumeration and float64 numpy references, to a tolerance that float32
rounding explains, or, for estimates, to 4 of their standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make_linear_gaussian
from scipy.special import log_expit, logsumexp
from scipy.stats import multivariate_normal

import lvmjax
from lvmjax import amortized
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian
from lvmjax.variational import full_rank_gaussian

KEY = jax.random.PRNGKey(20261123)
MANY = 100_000
F32_EPS = float(np.finfo(np.float32).eps)


def float64_log_marginal(params, x):
    """log N(x; b, W Wᵀ + Ψ) in float64 scipy."""
    weight, bias, noise = (np.asarray(leaf, np.float64) for leaf in params)
    covariance = weight @ weight.T + np.diag(np.broadcast_to(noise, bias.shape))
    return multivariate_normal.logpdf(np.asarray(x, np.float64), bias, covariance)


def exact_encoder():
    """An AmortizedModel whose encoder is the exact posterior p(z | x) of the linear-Gaussian model:
    importance sampling from it gives log p(x) with every weight equal."""

    def encoder_output(params, x):
        posterior = linear_gaussian.posterior(params, x)
        scale_tril = posterior.scale_tri
        return {"mean": posterior.mean(), "log_diag": jnp.log(jnp.diag(scale_tril)), "off_diag": scale_tril}

    return amortized.AmortizedModel(linear_gaussian.model, full_rank_gaussian(2), encoder_output, None, 2)


EXACT_ENCODER = exact_encoder()


def estimators(key, params, x, num_samples, chunk_size):
    """Every estimator of log p(x) (and bound) at K = num_samples, with q = p(z | x) where there is a q."""
    model, posterior = linear_gaussian.model, linear_gaussian.posterior(params, x)
    return {
        "log_marginal_is": lvmjax.log_marginal_is(key, model, params, posterior, x, num_samples, chunk_size),
        "amortized.log_marginal": amortized.log_marginal(key, EXACT_ENCODER, params, x, num_samples, chunk_size),
        "iwae_bound": lvmjax.iwae_bound(key, model, params, posterior, x, num_samples),
        "elbo": lvmjax.elbo(key, model, params, posterior, x, num_samples),
        "naive": lvmjax.log_marginal_naive_mc(key, model, params, x, num_samples, chunk_size),
    }


_estimators = jax.jit(estimators, static_argnames=("num_samples", "chunk_size"))


def linear_gaussian_case(noise, offset, along_the_loadings=False):
    """θ (D = 6, d = 2) with Ψ = noise · I, and x `offset` away from the model's mean: off the plane of
    the loadings W (every direction), or along it (z far out in the prior's tail)."""
    params, x = make_linear_gaussian(data_dim=6)
    params = params._replace(noise_variance=jnp.full(6, noise, jnp.float32))
    if along_the_loadings:
        x = params.weight @ jnp.array([offset, -offset / 2]) + params.bias + 0.3 * jnp.sqrt(noise)
    else:
        x = x + offset
    return params, x


CASES = {
    "tiny noise": (1e-6, 0.0, False),
    "tiny noise, 1e3 away": (1e-6, 1e3, False),
    "tiny noise, 1e4 away": (1e-6, 1e4, False),
    "tiny noise, z 1e3 out": (1e-6, 1e3, True),
    "1e4 away": (0.3, 1e4, False),
    "z 1e4 out": (0.3, 1e4, True),
}


@pytest.fixture(scope="module", params=list(CASES))
def extreme(request):
    params, x = linear_gaussian_case(*CASES[request.param])
    return params, x, float64_log_marginal(params, x)


@pytest.mark.parametrize(("num_samples", "chunk_size"), [(1, None), (MANY, 10_000)], ids=["K=1", "K=100000"])
def test_with_the_exact_posterior_every_estimator_is_log_p_x_at_any_k(extreme, num_samples, chunk_size):
    """With q = p(z | x), w_k = p(x) for every draw, so each bound and estimate equals log p(x): to the
    rounding of float32 numbers as large as log p(x) itself (−3 × 10¹⁴ for x 10⁴ away, Ψ = 10⁻⁶)."""
    params, x, exact = extreme
    values = _estimators(KEY, params, x, num_samples=num_samples, chunk_size=chunk_size)
    tolerance = 1e-6 * abs(exact) + 1e-3
    for name in ("log_marginal_is", "amortized.log_marginal"):
        estimate = values[name]
        np.testing.assert_allclose(estimate.log_marginal, exact, rtol=0, atol=tolerance, err_msg=name)
        assert int(estimate.num_samples) == num_samples
        if num_samples == 1:  # one weight: no spread to estimate, and its own effective sample size
            assert np.isnan(estimate.stderr) and float(estimate.ess) == 1.0
        else:
            assert np.isfinite(estimate.stderr) and 1.0 <= float(estimate.ess) <= num_samples
    for name in ("iwae_bound", "elbo"):
        np.testing.assert_allclose(values[name], exact, rtol=0, atol=tolerance, err_msg=name)
    # Naive Monte Carlo from the prior: finite, and below log p(x) (Jensen), here by far for x far out.
    naive = values["naive"]
    assert np.isfinite(naive.log_marginal) and float(naive.log_marginal) <= exact + tolerance


def test_naive_monte_carlo_with_k_100000_finds_a_tiny_noise_marginal():
    """Ψ = 10⁻⁴ I, x on the plane of W: the posterior is tiny next to the prior, but 100,000 prior draws hit it."""
    params, _ = linear_gaussian_case(1e-4, 0.0)
    x = params.weight @ jnp.array([0.3, -0.2]) + params.bias
    exact = float64_log_marginal(params, x)
    naive = _estimators(KEY, params, x, num_samples=MANY, chunk_size=10_000)["naive"]
    assert abs(float(naive.log_marginal) - exact) < 4 * float(naive.stderr) + 1e-5, (naive, exact)
    assert 1 < float(naive.ess) < 0.01 * MANY  # few of the draws carry the estimate


# --- Mixtures: components of tiny variance, far apart -----------------------------------

GM_MEANS = np.array([[0.0, 0.0, 0.0], [1e3, -1e3, 5e2], [1e4, 1e4, -1e4]])
GM_SCALES = np.array([1e-3, 1.0, 1e-3])
GM_PARAMS = gaussian_mixture.Params(
    jnp.asarray([0.0, 1.0, -2.0], jnp.float32),
    jnp.asarray(GM_MEANS, jnp.float32),
    jnp.asarray(GM_SCALES[:, None, None] * np.eye(3), jnp.float32),
)


def float64_mixture_log_marginal(x):
    log_weights = np.asarray(jax.nn.log_softmax(GM_PARAMS.logits), np.float64)
    return logsumexp(
        [
            multivariate_normal.logpdf(np.asarray(x, np.float64), mean, scale**2 * np.eye(3))
            for mean, scale in zip(GM_MEANS, GM_SCALES, strict=True)
        ]
        + log_weights
    )


@jax.jit
def _mixture_estimates(key, x):
    model = gaussian_mixture.model
    return (
        gaussian_mixture.log_marginal(GM_PARAMS, x),
        lvmjax.log_marginal_exact(model, GM_PARAMS, x),
        lvmjax.log_marginal_is(key, model, GM_PARAMS, gaussian_mixture.posterior(GM_PARAMS, x), x, 1),
        lvmjax.log_marginal_naive_mc(key, model, GM_PARAMS, x, MANY, 10_000, proposal="uniform"),
    )


@pytest.mark.parametrize(
    "x",
    [GM_MEANS[0] + 1e-3, GM_MEANS[1] + 0.5, GM_MEANS[2] - 2e-3, [5e3, 5e3, 0.0], GM_MEANS[2] + 100.0],
    ids=["in a tiny component", "1e3 out", "1e4 out, in a tiny component", "between", "100 from a tiny component"],
)
def test_gaussian_mixture_with_tiny_far_components(x):
    """σ = 10⁻³ and 1, 10⁴ apart: log p(x) from the closed form, enumeration, IS with K = 1 from the exact
    posterior and naive MC with K = 100,000 uniform draws of z, all against float64 scipy."""
    x = jnp.asarray(x, jnp.float32)
    exact = float64_mixture_log_marginal(x)
    closed_form, enumerated, from_posterior, uniform = _mixture_estimates(KEY, x)
    tolerance = 1e-6 * abs(exact) + 1e-5
    for value in (closed_form, enumerated, from_posterior.log_marginal):
        np.testing.assert_allclose(value, exact, rtol=0, atol=tolerance)
    assert abs(float(uniform.log_marginal) - exact) < 4 * float(uniform.stderr) + tolerance


def test_bernoulli_mixture_with_nearly_certain_pixels():
    """Pixel probabilities σ(±50) and σ(±20) over D = 1000, weights down to e⁻³⁰: log p(x) of a prototype
    and of one with 10 pixels flipped (each −50 or −20 nats) from the closed form, enumeration, the
    E-step and IS with K = 1 from the exact posterior, against float64 numpy."""
    rng = np.random.default_rng(0)
    logits = rng.choice([-50.0, 50.0, -20.0, 20.0], size=(4, 1000))
    params = bernoulli_mixture.Params(
        jnp.asarray([0.0, 0.0, -30.0, 5.0], jnp.float32), jnp.asarray(logits, jnp.float32)
    )
    prototypes = (logits > 0).astype(np.float32)
    flipped = prototypes.copy()
    flipped[:, :10] = 1 - flipped[:, :10]
    data = np.concatenate([prototypes, flipped])
    log_joint = (
        np.asarray(jax.nn.log_softmax(params.logits), np.float64)
        + data @ log_expit(logits).T
        + (1 - data) @ log_expit(-logits).T
    )
    expected = logsumexp(log_joint, axis=1)

    @jax.jit
    def every_way(x):
        return (
            bernoulli_mixture.log_marginal(params, x),
            lvmjax.log_marginal_exact(bernoulli_mixture.model, params, x),
            lvmjax.log_marginal_is(
                KEY, bernoulli_mixture.model, params, bernoulli_mixture.posterior(params, x), x, 1
            ).log_marginal,
        )

    values = np.stack(jax.vmap(every_way)(jnp.asarray(data)))  # (3 ways, 8 datapoints)
    np.testing.assert_allclose(values, np.broadcast_to(expected, values.shape), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(bernoulli_mixture.e_step(params, jnp.asarray(data))[1], expected.mean(), rtol=1e-6)


# --- EM ----------------------------------------------------------------------------------


def clusters(offset, scale, num_per_cluster=100, seed=0):
    """Three clusters of `num_per_cluster` points with standard deviation `scale`, `offset` from the origin,
    their centres 100 · scale apart (and at least 5): float32 data, and the labels."""
    rng = np.random.default_rng(seed)
    centres = offset + max(100 * scale, 5.0) * np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    labels = np.repeat(np.arange(3), num_per_cluster)
    return (centres[labels] + scale * rng.normal(size=(3 * num_per_cluster, 2))).astype(np.float32), labels


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize(
    ("offset", "scale"),
    [(0.0, 1e-4), (1e3, 1e-3), (1e4, 1.0)],
    ids=["variance 1e-8", "variance 1e-6, 1e3 away", "1e4 away"],
)
def test_gaussian_mixture_em_finds_tiny_or_far_clusters(offset, scale, covariance_type):
    """EM from hard assignments to the true clusters: its fixed point is each cluster's own sample mean and
    covariance (plus reg_covar), in float64 from the float32 data; the mean log-likelihood of the fit is
    that of float64 scipy; the trace never decreases."""
    data, labels = clusters(offset, scale)
    start = gaussian_mixture.m_step(jnp.asarray(data), jnp.log(jax.nn.one_hot(labels, 3)), covariance_type)
    params, info = gaussian_mixture.fit_em(KEY, jnp.asarray(data), 3, covariance_type, max_iter=20, init_params=start)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(params))
    trace = np.asarray(info.objective)[: int(info.num_iterations)]
    assert np.all(np.isfinite(trace)) and np.all(np.diff(trace) >= -1e-5 * np.abs(trace[1:]))
    data64 = data.astype(np.float64)
    tril = np.asarray(params.scale_tril, np.float64)
    for k in range(3):
        members = data64[labels == k]
        covariance = np.cov(members.T, bias=True)
        if covariance_type == "diag":
            covariance = np.diag(np.diag(covariance))
        np.testing.assert_allclose(params.means[k], members.mean(axis=0), rtol=0, atol=4 * F32_EPS * (offset + 10))
        np.testing.assert_allclose(tril[k] @ tril[k].T, covariance + 1e-6 * np.eye(2), rtol=2e-3, atol=1e-3 * scale**2)
    log_densities = np.stack(
        [
            multivariate_normal.logpdf(data64, np.asarray(params.means[k], np.float64), tril[k] @ tril[k].T)
            for k in range(3)
        ],
        axis=1,
    )
    expected = logsumexp(log_densities + np.asarray(jax.nn.log_softmax(params.logits), np.float64), axis=1).mean()
    np.testing.assert_allclose(gaussian_mixture.e_step(params, jnp.asarray(data))[1], expected, rtol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 2.0], ids=["maximum likelihood", "Beta(2, 2)"])
def test_bernoulli_mixture_em_on_noise_free_prototypes(alpha):
    """200 pixels, each constant within each of 3 components: at maximum likelihood (α = β = 1) μ_kd is
    0 or 1 but for the floor, and the log-likelihood is the mixing weights' alone, Σ_k π_k log π_k;
    everything finite, and the E-step's log-likelihood that of float64 numpy at the fitted θ."""
    rng = np.random.default_rng(1)
    prototypes = rng.uniform(size=(3, 200)) < 0.5
    labels = np.repeat(np.arange(3), [50, 30, 20])
    data = prototypes[labels].astype(np.float32)
    # k-means++ never starts two components in one prototype: its squared distance from the first is 0.
    params, info = bernoulli_mixture.fit_em(KEY, data, 3, alpha=alpha, beta=alpha)
    logits = np.asarray(params.probs_logits, np.float64)
    assert np.all(np.isfinite(logits)) and bool(info.converged)
    log_joint = (
        np.asarray(jax.nn.log_softmax(params.logits), np.float64)
        + data @ log_expit(logits).T
        + (1 - data) @ log_expit(-logits).T
    )
    mean_log_likelihood = float(bernoulli_mixture.e_step(params, jnp.asarray(data))[1])
    np.testing.assert_allclose(mean_log_likelihood, logsumexp(log_joint, axis=1).mean(), rtol=1e-6)
    order = [int(np.argmin(np.sum((logits > 0) != prototype, axis=1))) for prototype in prototypes]
    np.testing.assert_array_equal(logits[order] > 0, prototypes)  # each component is one prototype
    if alpha == 1.0:
        weights = np.array([50, 30, 20]) / 100
        # Each of the 200 pixels adds log σ(logit μ_kd) = -10 ε / N_k or so: 10⁻⁵ in all.
        np.testing.assert_allclose(mean_log_likelihood, np.sum(weights * np.log(weights)), rtol=1e-4)


FA_WEIGHT = np.random.default_rng(2).normal(size=(6, 2))


def factor_data(noise, offset, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(500, 2)) @ FA_WEIGHT.T + offset + noise * rng.normal(size=(500, 6))).astype(np.float32)


FA_ITERATIONS = 150


def factor_analysis_fit(noise, offset):
    """θ_t after FA_ITERATIONS iterations of EM, the objective EM records at θ_t (in the next iteration), the
    float64 mean log-likelihood at θ_t, and the float32 rounding bound of the first: EM's statistics come
    from S = (1/N) Σ (x_i - x̄)(x_i - x̄)ᵀ in float32, whose entries are off by ε ‖S‖, which moves
    tr(C⁻¹ S) by up to D ε ‖S‖ / min ψ_d."""
    data = factor_data(noise, offset)
    key = jax.random.PRNGKey(0)
    params, _ = linear_gaussian.fit_factor_analysis(key, data, 2, max_iter=FA_ITERATIONS, tol=0.0)
    _, info = linear_gaussian.fit_factor_analysis(key, data, 2, max_iter=FA_ITERATIONS + 1, tol=0.0)
    data64 = data.astype(np.float64)
    weight, bias, noise_variance = (np.asarray(leaf, np.float64) for leaf in params)
    exact = multivariate_normal.logpdf(data64, bias, weight @ weight.T + np.diag(noise_variance)).mean()
    bound = 6 * F32_EPS * np.abs(np.cov(data64.T, bias=True)).max() / noise_variance.min()
    return float(info.objective[FA_ITERATIONS]), exact, bound, params, data64


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_factor_analysis_with_small_noise_far_out(offset):
    """Ψ = 10⁻⁴ I, 10⁴ from the origin: θ finite, EM's objective the float64 log-likelihood within its
    rounding bound, and the fit as good as scikit-learn's float64 factor analysis within it."""
    from sklearn.decomposition import FactorAnalysis

    objective, exact, bound, params, data64 = factor_analysis_fit(1e-2, offset)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in params) and bound < 0.1
    assert abs(objective - exact) <= bound, (objective, exact, bound)
    reference = FactorAnalysis(2, tol=1e-10, max_iter=5000).fit(data64).score(data64)
    assert exact >= reference - bound, (exact, reference, bound)


def test_factor_analysis_below_float32_resolution_warns_and_float64_resolves_it():
    """Noise variance 10⁻⁶ against variances of order 1: S, formed in float32, holds ψ_d only to
    ε max S_dd, so the float32 fit's objective is rounding noise, and the fit says so; the same data in
    float64 gives the float64 log-likelihood to 10⁻⁸."""
    data = factor_data(1e-3, 0.0)
    key = jax.random.PRNGKey(0)
    with pytest.warns(
        RuntimeWarning,
        match=r"factor analysis in float32: the smallest noise variance, 1e-06, is "
        r"below what S .* resolves in float32, .* fit in float64",
    ):
        linear_gaussian.fit_factor_analysis(key, data, 2, max_iter=FA_ITERATIONS, tol=0.0)
    data64 = data.astype(np.float64)
    with jax.enable_x64(True):
        params, info = linear_gaussian.fit_factor_analysis(key, data64, 2, max_iter=FA_ITERATIONS + 1, tol=0.0)
        assert info.objective.dtype == np.float64
        weight, bias, noise_variance = (np.asarray(leaf) for leaf in params)
    covariance = weight @ weight.T + np.diag(noise_variance)
    # θ after FA_ITERATIONS + 1 iterations; objective[FA_ITERATIONS] is the log-likelihood of the θ before it,
    # which differs from it by less than EM's last increase.
    exact = multivariate_normal.logpdf(data64, bias, covariance).mean()
    increase = float(info.objective[FA_ITERATIONS] - info.objective[FA_ITERATIONS - 1])
    assert 0 <= exact - float(info.objective[FA_ITERATIONS]) <= max(increase, 0) + 1e-8 * abs(exact)


_log_marginals = jax.jit(jax.vmap(linear_gaussian.log_marginal, in_axes=(None, 0)))


@pytest.mark.parametrize("seed", range(4))
def test_ppca_of_data_in_a_subspace_has_a_positive_noise_variance(seed):
    """50 points on a line in 5-D: the discarded eigenvalues of S are 0 but for rounding, and their mean
    came out negative for most of these datasets (σ² ≈ −5 × 10⁻⁸, and log p(x) NaN). σ² is now at least
    the floor of `fit_ppca_em`, ε · tr(S) / D, and log p(x) is finite and that of float64 scipy at the
    fitted θ."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=(50, 1)) @ rng.normal(size=(1, 5)) + 3.0).astype(np.float32)
    params = linear_gaussian.fit_ppca(jnp.asarray(data), 1)
    floor = F32_EPS * np.mean(np.var(data.astype(np.float64), axis=0))
    assert float(params.noise_variance) >= floor * (1 - 1e-3)
    log_marginals = np.asarray(_log_marginals(params, jnp.asarray(data)))
    assert np.all(np.isfinite(log_marginals))
    expected = [float64_log_marginal(params, x) for x in data]
    np.testing.assert_allclose(log_marginals, expected, rtol=1e-4)

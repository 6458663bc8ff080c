"""Tests of lvmjax.ais against exact answers: factor analysis's closed-form log p(x), a zero-variance identity,
the BDMC bracket, and a two-mode posterior whose log p(x) is known by quadrature.

Tolerances are statistical: 4 reported standard errors of one run with a fixed key, or 4 standard errors of a
mean over repeated keys (`assert_within_stderr`); the identities hold to float32 rounding.
"""

from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_stderr, make_gaussian_mixture, make_linear_gaussian
from scipy.special import logsumexp

import lvmjax
from lvmjax import ais
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.models import gaussian_mixture, linear_gaussian

NUM_REPEATS = 20
CALIBRATION_STEPS, CALIBRATION_CHAINS = 200, 32


def _factor_analysis(latent_dim, data_dim, dtype=jnp.float32):
    """Factor analysis with a concentrated posterior (Ψ ≈ 0.3 I) and one datapoint drawn from the model."""
    params, x = make_linear_gaussian(dtype=dtype, latent_dim=latent_dim, data_dim=data_dim)
    return params, x, float(linear_gaussian.log_marginal(params, x))


@pytest.fixture(scope="module")
def fa4():
    return _factor_analysis(latent_dim=4, data_dim=8)


@pytest.fixture(scope="module")
def calibration(fa4):
    """log_marginal_ais from the prior with NUM_REPEATS keys (vmapped: one compilation)."""
    params, x, _ = fa4

    def estimate(key):
        return ais.log_marginal_ais(
            key, linear_gaussian.model, params, x, num_steps=CALIBRATION_STEPS, num_chains=CALIBRATION_CHAINS
        )

    keys = jax.random.split(jax.random.key(0), NUM_REPEATS)
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(estimate))(keys))


def test_annealing_schedules():
    for schedule in ais.SCHEDULES:
        betas = ais.annealing_schedule(50, schedule)
        assert betas.shape == (51,) and betas[0] == 0.0 and betas[-1] == 1.0
        assert np.all(np.diff(betas) > 0)
    np.testing.assert_allclose(ais.annealing_schedule(4, "linear"), [0, 0.25, 0.5, 0.75, 1])
    # Grosse et al. (2015): β̃_t = σ(4 (2t/T - 1)), rescaled to [0, 1]; symmetric about t = T/2.
    tilde = 1 / (1 + np.exp(-4 * (2 * np.arange(11) / 10 - 1)))
    betas = ais.annealing_schedule(10)
    np.testing.assert_allclose(betas, (tilde - tilde[0]) / (tilde[-1] - tilde[0]), atol=1e-15)
    np.testing.assert_allclose(betas + betas[::-1], 1.0, atol=1e-15)


def test_ais_from_the_prior_matches_factor_analysis(fa4, calibration):
    """Latent dimension 4: one run within 4 of its reported standard errors, and the mean of 20 runs within 4
    standard errors of that mean (a bias check of the adapted, only approximately unbiased, estimator)."""
    _, _, exact = fa4
    assert abs(calibration.log_marginal[0] - exact) <= 4 * calibration.stderr[0]
    assert_within_stderr(calibration.log_marginal, exact)
    assert np.all(calibration.num_samples == CALIBRATION_CHAINS)
    assert np.all((calibration.ess >= 1) & (calibration.ess <= CALIBRATION_CHAINS))


def test_ais_from_the_prior_matches_factor_analysis_in_10_dimensions():
    params, x, exact = _factor_analysis(latent_dim=10, data_dim=20)
    estimate = jax.jit(lambda key: ais.log_marginal_ais(key, linear_gaussian.model, params, x, 1000, 32))(
        jax.random.key(1)
    )
    assert abs(float(estimate.log_marginal) - exact) <= 4 * float(estimate.stderr)
    assert float(estimate.stderr) < 0.6  # 4 se is a bound of a few nats, not a vacuous one (measured: 0.2-0.45)


def test_reported_stderr_is_calibrated(calibration):
    """The spread of 20 independent estimates matches their mean reported standard error.

    With 20 repeats the sample standard deviation has a relative standard error of about 1/√(2·19) ≈ 0.16 for
    Gaussian estimates (more for the skewed log p̂); the delta method's standard error is itself estimated
    from the 32 chains' weights. A factor of 2 either way is then over 4 of those standard errors on the log
    scale, and still catches a standard error that is wrong by a factor of √K (one chain's instead of the
    mean's) or that ignores the weights' spread. Measured: 1.28 here (T = 200, K = 32); 1.0 at T = 100 and 300
    with K = 16; 1.6 at T = 30, where the effective sample size is 4 of 16 and the delta method starts to
    undercount the tails.
    """
    ratio = np.std(calibration.log_marginal, ddof=1) / np.mean(calibration.stderr)
    assert 0.5 <= ratio <= 2.0, ratio


@pytest.mark.parametrize("num_steps", [1, 25])
def test_exact_posterior_proposal_gives_zero_variance(fa4, num_steps):
    """With p0 = p(z | x), log p(x, z) - log p0(z) = log p(x) for every z: every increment is
    (β_t - β_{t-1}) log p(x), whatever the chains do, so every forward log-weight is log p(x) and every
    reverse one -log p(x): AIS and both sides of BDMC are exact, with zero variance."""
    params, x, exact = fa4
    posterior = linear_gaussian.posterior(params, x)
    model = linear_gaussian.model

    def run(key):
        log_weights = ais.ais_log_weights(key, model, params, x, num_steps, 16, proposal=posterior)
        estimate = ais.log_marginal_ais(key, model, params, x, num_steps, 16, proposal=posterior)
        z = posterior.sample(seed=jax.random.fold_in(key, 1))
        bracket = ais.bdmc(key, model, params, x, z, num_steps, 16, proposal=posterior)
        return log_weights, estimate, bracket

    log_weights, estimate, bracket = jax.jit(run)(jax.random.key(2))
    # float32 rounding of log p(x, z) and log p0(z), terms of size ~10-30: 1e-4 is ~100 ulps of log p(x).
    np.testing.assert_allclose(log_weights, exact, atol=1e-4, rtol=0)
    for result in (estimate, bracket.lower, bracket.upper):
        np.testing.assert_allclose(result.log_marginal, exact, atol=1e-4, rtol=0)
        assert float(result.stderr) < 1e-4
        np.testing.assert_allclose(result.ess, 16, rtol=1e-5)


def test_one_step_is_importance_sampling_from_the_prior(fa4):
    """T = 1 leaves no transition: log w_k = log p(x, z_k) - log p(z_k) with z_k the draws of log_weights."""
    params, x, _ = fa4
    key = jax.random.key(3)
    annealed = ais.ais_log_weights(key, linear_gaussian.model, params, x, num_steps=1, num_chains=8)
    key_init, _ = jax.random.split(key)
    prior = linear_gaussian.prior(params)
    importance = lvmjax.log_weights(key_init, linear_gaussian.model, params, prior, x, 8)
    np.testing.assert_allclose(annealed, importance, rtol=1e-6, atol=1e-5)


class BDMCRuns(NamedTuple):
    params: linear_gaussian.Params
    x: jax.Array
    exact: float
    key: jax.Array  # the key of every run
    runs: dict[int, ais.BDMCResult]  # by num_steps


@pytest.fixture(scope="module")
def bdmc_runs():
    """BDMC on factor analysis with latent dimension 20, from one exact posterior sample, at 10, 100, 1000 steps.

    The dimension is 20 so that the gap is mostly AIS's bias at every T: at d = 4 it is below the noise of
    16 chains beyond T = 100, and its ordering between T = 100 and 1000 is a coin toss (measured over 16 keys;
    at d = 20 the ordering held for all 16).
    """
    params, x, exact = _factor_analysis(latent_dim=20, data_dim=40)
    z = linear_gaussian.posterior(params, x).sample(seed=jax.random.key(4))
    key = jax.random.key(5)
    runs = {
        num_steps: jax.jit(lambda key, n=num_steps: ais.bdmc(key, linear_gaussian.model, params, x, z, n, 16))(key)
        for num_steps in (10, 100, 1000)
    }
    return BDMCRuns(params, x, exact, key, runs)


def test_bdmc_brackets_log_marginal(bdmc_runs):
    """lower <= log p(x) <= upper within 4 standard errors at every T, and both close in on it at T = 1000
    (measured there: lower 0.24 below, upper 1.0 above, with standard errors 0.5 and 0.6)."""
    exact, runs = bdmc_runs.exact, bdmc_runs.runs
    for num_steps, result in runs.items():
        assert float(result.lower.log_marginal) <= exact + 4 * float(result.lower.stderr), num_steps
        assert float(result.upper.log_marginal) >= exact - 4 * float(result.upper.stderr), num_steps
    for side in runs[1000]:
        assert abs(float(side.log_marginal) - exact) <= 4 * float(side.stderr), side


def test_bdmc_gap_shrinks_with_more_steps(bdmc_runs):
    runs = bdmc_runs.runs
    gaps = [float(runs[n].upper.log_marginal - runs[n].lower.log_marginal) for n in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] > -4 * float(np.hypot(runs[1000].lower.stderr, runs[1000].upper.stderr)), gaps


def test_bdmc_lower_is_forward_ais(bdmc_runs):
    params, x, _, key, runs = bdmc_runs
    key_forward, _ = jax.random.split(key)
    forward = jax.jit(lambda key: ais.log_marginal_ais(key, linear_gaussian.model, params, x, 10, 16))(key_forward)
    np.testing.assert_allclose(runs[10].lower.log_marginal, forward.log_marginal, rtol=1e-6)
    np.testing.assert_allclose(runs[10].lower.stderr, forward.stderr, rtol=1e-5)


# --- A two-mode, non-Gaussian posterior ---------------------------------------------------------------------
#
#   z ~ N(0, I_2),    x | z ~ N((z_1 z_2, z_1 + z_2), σ² I),    σ = 0.1,    x = (1, 2.3)
#
# The posterior has two curved modes, near the two roots (z_1, z_2) = (1.72, 0.58) and (0.58, 1.72) of
# t² - 2.3 t + 1 = 0, of equal mass by the symmetry z_1 ↔ z_2; twice the Laplace approximation at one mode is
# off by 0.12 nats, so the modes are not Gaussian.

NOISE = 0.1
OBSERVATION = (1.0, 2.3)


def _two_mode_prior(params):
    return distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))


def _two_mode_likelihood(params, z):
    return distrax.MultivariateNormalDiag(jnp.stack([z[0] * z[1], z[0] + z[1]]), jnp.full(2, params["noise"]))


two_mode_model = lvmjax.LatentVariableModel(_two_mode_prior, _two_mode_likelihood)


def _log_marginal_by_quadrature(x, noise, limit=5.0, num_points=801):
    """log ∫ p(x, z) dz by a Riemann sum on a grid, in float64: spacing 0.0125, ~6 to the posterior's smallest
    standard deviation, for a smooth integrand (at 1601 points, or to ±7, it moves by 1e-13)."""
    grid = np.linspace(-limit, limit, num_points)
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    residual = (x[0] - z1 * z2) ** 2 + (x[1] - z1 - z2) ** 2
    log_joint = -0.5 * (z1**2 + z2**2 + residual / noise**2) - 2 * np.log(2 * np.pi) - 2 * np.log(noise)
    return float(logsumexp(log_joint) + 2 * np.log(grid[1] - grid[0]))


def _laplace_at_one_mode(params, x):
    """N(z*, (-∇² log p(x, z*))⁻¹) at the mode with z_1 > z_2: a Gaussian q as a mode-seeking fit would find."""

    def log_joint(z):
        return lvmjax.log_joint(two_mode_model, params, x, z)

    newton = jax.jit(lambda z: z - jnp.linalg.solve(jax.hessian(log_joint)(z), jax.grad(log_joint)(z)))
    z = jnp.asarray([1.7, 0.6])
    for _ in range(20):
        z = newton(z)
    covariance = jnp.linalg.inv(-jax.hessian(log_joint)(z))
    return distrax.MultivariateNormalFullCovariance(z, 0.5 * (covariance + covariance.T))


def test_ais_converges_on_a_two_mode_posterior_where_a_fitted_gaussian_misses_half():
    """AIS from the prior, over 16 keys: each run within 4 of its standard errors of the quadrature value, and
    their mean within 4 standard errors of the mean (a check of the step-size adaptation's bias: with one
    step size per chain, adapted from that chain's acceptances, the mean came out 0.28 ± 0.03 too high).
    Importance sampling from a Gaussian fitted to one mode, with as many log-joint evaluations
    (K T (L + 1), a gradient counted as one), misses the other mode: it is off by nearly log 2, and further
    off than AIS with the same key.

    Measured at these 16 keys: AIS's error in [-0.31, 0.32] (|error| / se <= 2.1), their mean -0.05 against a
    tolerance of 0.19 (over 48 other keys: +0.03 ± 0.03); the fitted Gaussian's error in [-0.71, -0.44]; the
    ordering held for all 16 with a margin of 0.14. (Importance sampling from the PRIOR
    does as well as AIS here at this cost: in two dimensions the posterior's mass under the prior is not small
    enough for annealing to pay; the fitted Gaussian is the case where its failure is silent.)
    """
    params = {"noise": jnp.asarray(NOISE)}
    x = jnp.asarray(OBSERVATION)
    exact = _log_marginal_by_quadrature(OBSERVATION, NOISE)
    num_steps, num_chains, num_leapfrog_steps = 1000, 16, 10
    budget = num_chains * num_steps * (num_leapfrog_steps + 1)
    fitted = _laplace_at_one_mode(params, x)

    def estimates(key):
        annealed = ais.log_marginal_ais(
            key, two_mode_model, params, x, num_steps, num_chains, num_leapfrog_steps=num_leapfrog_steps
        )
        return annealed, lvmjax.log_marginal_is(key, two_mode_model, params, fitted, x, budget)

    annealed, importance = jax.jit(jax.vmap(estimates))(jax.random.split(jax.random.key(6), 16))
    ais_error = np.asarray(annealed.log_marginal) - exact
    is_error = np.asarray(importance.log_marginal) - exact
    assert np.all(np.abs(ais_error) <= 4 * np.asarray(annealed.stderr)), (ais_error, annealed.stderr)
    assert_within_stderr(annealed.log_marginal, exact)
    assert np.all(np.abs(is_error) > np.abs(ais_error)), (is_error, ais_error)
    assert np.all(is_error < -0.5 * np.log(2)), is_error  # it sees one of two modes of equal mass


# --- Compilation, batching, precision --------------------------------------------------------------------


def test_jit_and_vmap_over_datapoints_match_single_calls(fa4):
    params, x, _ = fa4
    xs = jnp.stack([x, x + 0.3, x - 0.5])
    keys = jax.random.split(jax.random.key(7), 3)

    def estimate(key, x):
        return ais.log_marginal_ais(key, linear_gaussian.model, params, x, num_steps=30, num_chains=8)

    batched = jax.jit(jax.vmap(estimate))(keys, xs)
    for i in range(3):
        single = estimate(keys[i], xs[i])
        np.testing.assert_allclose(batched.log_marginal[i], single.log_marginal, rtol=1e-5)
        np.testing.assert_allclose(batched.stderr[i], single.stderr, rtol=1e-4)
        np.testing.assert_allclose(batched.ess[i], single.ess, rtol=1e-4)


def test_float64_agrees_with_float32(fa4, calibration):
    """The same run in float64: its own dtype, within 4 se of the exact value, and within 4 combined standard
    errors of the float32 run with the same key (the chains' paths diverge, so the two are nearly independent)."""
    with jax.enable_x64(True):
        params, x, exact = _factor_analysis(latent_dim=4, data_dim=8, dtype=jnp.float64)
        estimate = jax.jit(
            lambda key: ais.log_marginal_ais(
                key, linear_gaussian.model, params, x, CALIBRATION_STEPS, CALIBRATION_CHAINS
            )
        )(jax.random.split(jax.random.key(0), NUM_REPEATS)[0])
        assert estimate.log_marginal.dtype == jnp.float64
        log_marginal, stderr = float(estimate.log_marginal), float(estimate.stderr)
    assert abs(exact - fa4[2]) < 1e-4
    assert abs(log_marginal - exact) <= 4 * stderr
    combined = np.hypot(stderr, calibration.stderr[0])
    assert abs(log_marginal - calibration.log_marginal[0]) <= 4 * combined


def test_latents_of_any_event_shape(fa4):
    """A 2 x 2 matrix latent (factor analysis with z reshaped) is flattened for HMC and reshaped for the model."""
    params, x, exact = fa4

    def prior(params):
        return distrax.Independent(distrax.Normal(jnp.zeros((2, 2)), jnp.ones((2, 2))), 2)

    def likelihood(params, z):
        return linear_gaussian.likelihood(params, z.reshape(-1))

    model = lvmjax.LatentVariableModel(prior, likelihood)
    estimate = jax.jit(lambda key: ais.log_marginal_ais(key, model, params, x, 100, 16))(jax.random.key(8))
    assert abs(float(estimate.log_marginal) - exact) <= 4 * float(estimate.stderr)


# --- Bad input ------------------------------------------------------------------------------------------


def test_bad_input_is_named(fa4):
    params, x, _ = fa4
    model = linear_gaussian.model
    key = jax.random.key(0)
    mixture_params, mixture_x = make_gaussian_mixture()
    cases = [
        (
            lambda: ais.log_marginal_ais(key, gaussian_mixture.model, mixture_params, mixture_x, 10, 4),
            ArgumentTypeError,
            "continuous latents.*log_marginal_exact.*log_marginal_is",
        ),
        (lambda: ais.log_marginal_ais(key, model, params, x, 0, 4), ArgumentError, "num_steps must be at least 1"),
        (lambda: ais.log_marginal_ais(key, model, params, x, 10, 0), ArgumentError, "num_chains must be at least 1"),
        (lambda: ais.log_marginal_ais(key, model, params, x.at[0].set(jnp.nan), 10, 4), ArgumentError, "x contains"),
        (
            lambda: ais.log_marginal_ais(key, model, params, x, 10, 4, schedule="cosine"),
            ArgumentError,
            "schedule must be 'sigmoid' or 'linear', got 'cosine'",
        ),
        (lambda: ais.log_marginal_ais(key, model, params, x, 10, 4, step_size=0.0), ArgumentError, "step_size"),
        (
            lambda: ais.log_marginal_ais(key, model, params, x, 10, 4, target_acceptance=1.5),
            ArgumentError,
            "target_acceptance",
        ),
        (lambda: ais.bdmc(key, model, params, x, jnp.zeros(3), 10, 4), ArgumentError, "z has shape"),
        (
            lambda: ais.bdmc(key, model, params, x, jnp.zeros(4), 10, 4, proposal=distrax.Normal(0.0, 1.0)),
            ArgumentError,
            "proposal is a distribution over latents of shape",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()

"""Posterior sampling by NUTS and HMC against the exact posterior of factor analysis.

The Monte Carlo tolerances follow from the samplers' own effective sample sizes: the
mean of S_eff effectively independent draws of f(z) is off from E[f(z) | x] by about
sd(f(z) | x) / √S_eff, and the checks allow 4 of those standard errors.
"""

import itertools
import re

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.diagnostics import effective_sample_size
from helpers import make_gaussian_mixture, make_linear_gaussian

import lvmjax
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.mcmc import MCMCInfo, PosteriorSamples, sample_posterior
from lvmjax.models import gaussian_mixture, linear_gaussian

KEY = jax.random.key(20260101)
LATENT_DIM = 3
NUM_SAMPLES, NUM_WARMUP, NUM_CHAINS = 1000, 500, 4
# HMC's fixed trajectory εL must stay away from a period of the (preconditioned) posterior's
# oscillation, ≈ 2π for unit scales, where each draw returns near its start. With ε ≈ 0.75 the
# default L = 10 lands there on this posterior (ESS ≈ 10 of 4000); L = 3 (εL ≈ 2.2) does not.
HMC_STEPS = 3
NUM_STDERR = 4.0


def factor_analysis(dtype=jnp.float32):
    """Factor analysis with D = 6, d = 3 and ψ ≈ 1, and one datapoint drawn from it: a posterior
    with standard deviations 0.26-0.52 and correlations below 0.3 (well conditioned)."""
    return make_linear_gaussian(dtype=dtype, data_dim=6, latent_dim=LATENT_DIM, noise=1.0, seed=3)


def run(algorithm, target_acceptance=0.8):
    params, x = factor_analysis()
    # A module-scoped fixture runs before the autouse strict-promotion fixture enters, so it opts in here.
    with jax.numpy_dtype_promotion("strict"):
        return sample_posterior(
            KEY,
            linear_gaussian.model,
            params,
            x,
            NUM_SAMPLES,
            NUM_WARMUP,
            NUM_CHAINS,
            algorithm=algorithm,
            num_integration_steps=HMC_STEPS,
            target_acceptance=target_acceptance,
        )


@pytest.fixture(scope="module", params=["nuts", "hmc"])
def posterior_run(request):
    return request.param, run(request.param)


def exact_posterior():
    params, x = factor_analysis()
    posterior = linear_gaussian.posterior(params, x)
    return np.asarray(posterior.mean(), np.float64), np.asarray(posterior.covariance(), np.float64)


def standard_error(variance, ess):
    """sd / √S_eff, with S_eff capped at the number of draws: Geyer's estimate of a chain with negative
    autocorrelations (HMC near half a period) can exceed it, and is then least reliable."""
    return np.sqrt(variance / np.minimum(np.asarray(ess, np.float64), NUM_CHAINS * NUM_SAMPLES))


# --- Against the exact posterior ---------------------------------------------------------------------


def test_samples_have_the_documented_shapes(posterior_run):
    _, result = posterior_run
    assert isinstance(result, PosteriorSamples) and isinstance(result.info, MCMCInfo)
    assert result.samples.shape == (NUM_CHAINS, NUM_SAMPLES, LATENT_DIM)
    info = result.info
    for field in (info.acceptance_rate, info.step_size, info.num_divergent, info.mean_integration_steps):
        assert field.shape == (NUM_CHAINS,)
    assert info.inverse_mass_matrix.shape == (NUM_CHAINS, LATENT_DIM)
    assert info.rhat.shape == info.ess.shape == (LATENT_DIM,)
    assert info.num_divergent.dtype == jnp.int32


def test_posterior_mean_matches_the_exact_posterior(posterior_run):
    _, result = posterior_run
    mean, covariance = exact_posterior()
    draws = np.asarray(result.samples, np.float64)
    bound = NUM_STDERR * standard_error(np.diag(covariance), result.info.ess)
    error = np.abs(draws.mean(axis=(0, 1)) - mean)
    assert np.all(error < bound), f"|mean - exact| = {error}, bound {bound}"


def test_posterior_covariance_matches_the_exact_posterior(posterior_run):
    """Σ̂_ij is the mean of f_ij = (z_i - μ_i)(z_j - μ_j) about the exact mean μ, unbiased for Σ_ij, with
    Var f_ij = Σ_ii Σ_jj + Σ_ij² for a Gaussian (Isserlis); its ESS is that of the f_ij chains themselves,
    lower than that of z, since HMC's antithetic moves that help the mean do not help second moments."""
    _, result = posterior_run
    mean, covariance = exact_posterior()
    centred = result.samples - jnp.asarray(mean, result.samples.dtype)
    products = centred[..., :, None] * centred[..., None, :]  # (chains, draws, d, d)
    ess = effective_sample_size(products)
    variance = np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2
    bound = NUM_STDERR * standard_error(variance, ess)
    error = np.abs(np.asarray(products, np.float64).mean(axis=(0, 1)) - covariance)
    assert np.all(error < bound), f"|Σ̂ - Σ| = {error}, bound {bound}"


# --- Diagnostics ------------------------------------------------------------------------------------


def test_chains_mix_on_a_well_conditioned_posterior(posterior_run):
    """R̂ below Vehtari et al.'s (2021) 1.01 for NUTS (≤ 1.003 over 12 keys) and below 1.05 for HMC (≤ 1.016
    over 12 keys: its near-antithetic moves flip z about the mean, which leaves |z - median z|, the tail part
    of R̂, autocorrelated); at least a quarter of the draws effective, so that the mean's tolerance above is
    under 4/√1000 ≈ 0.13 posterior standard deviations (the tests have power)."""
    algorithm, result = posterior_run
    info = result.info
    assert np.all(info.rhat < (1.01 if algorithm == "nuts" else 1.05)), info.rhat
    assert np.all(info.ess > 0.25 * NUM_CHAINS * NUM_SAMPLES), info.ess
    assert np.all(info.num_divergent == 0), info.num_divergent
    assert np.all(info.step_size > 0) and np.all(info.inverse_mass_matrix > 0)


def test_the_warmup_learns_the_posterior_variances(posterior_run):
    """The diagonal M⁻¹ estimates Var(z_j | x) from the warmup's draws (Stan's window adaptation)."""
    _, result = posterior_run
    _, covariance = exact_posterior()
    ratio = np.asarray(result.info.inverse_mass_matrix, np.float64) / np.diag(covariance)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio  # from the last window's 200 draws per chain


def test_acceptance_rate_follows_the_target(posterior_run):
    """Dual averaging sets the warmup's mean acceptance rate to the target; the draws then use the average
    of its fluctuating log ε, at which the acceptance rate is higher (as in Stan; by 0.1-0.25 here), so the
    rate is checked to be at least target - 0.1, and to rise, with a smaller ε, as the target rises."""
    algorithm, result = posterior_run
    runs = {0.6: run(algorithm, target_acceptance=0.6).info, 0.8: result.info}
    runs[0.95] = run(algorithm, target_acceptance=0.95).info
    for target, info in runs.items():
        assert np.all(info.acceptance_rate > target - 0.1), (target, info.acceptance_rate)
    rates = [float(np.mean(info.acceptance_rate)) for info in runs.values()]
    step_sizes = [np.mean(info.step_size) for info in runs.values()]
    assert step_sizes == sorted(step_sizes, reverse=True), step_sizes
    # The draws' rate at target 0.8 is already near its ceiling, so the rise from 0.8 to 0.95 can be within the
    # noise of a mean over the chains' draws (HMC's rate at target 0.8 and 0.95 came out 0.9434 and 0.9431 on
    # one machine): a rise overall, and no fall by more than 0.01 between neighbours.
    assert rates[-1] > rates[0] and all(later > earlier - 0.01 for earlier, later in itertools.pairwise(rates)), rates


def test_hmc_takes_its_fixed_number_of_steps_and_nuts_chooses(posterior_run):
    algorithm, result = posterior_run
    steps = np.asarray(result.info.mean_integration_steps)
    if algorithm == "hmc":
        np.testing.assert_allclose(steps, HMC_STEPS, rtol=1e-6)  # a float32 mean of 1000 threes
    else:
        assert np.all(steps >= 1) and not np.all(steps == steps[0]), steps


# --- Latents of any shape ---------------------------------------------------------------------------


def _matrix_prior(params):
    return distrax.Independent(distrax.Normal(jnp.zeros((2, 1)), jnp.ones((2, 1))), 2)


def _matrix_likelihood(params, z):
    return distrax.MultivariateNormalDiag(z.reshape(2), jnp.ones(2))


def test_latents_of_any_shape_are_sampled_in_their_shape():
    """z of shape (2, 1), z ~ N(0, I), x | z ~ N(z, I): p(z | x) = N(x / 2, I / 2). The axis of length 1
    checks that R̂ and ESS keep the event shape (blackjax's diagnostics squeeze such axes)."""
    model = lvmjax.LatentVariableModel(_matrix_prior, _matrix_likelihood)
    x = jnp.array([1.0, -2.0])
    result = sample_posterior(KEY, model, {}, x, 500, num_warmup=200, num_chains=2, algorithm="hmc")
    assert result.samples.shape == (2, 500, 2, 1)
    assert result.info.rhat.shape == result.info.ess.shape == (2, 1)
    assert result.info.inverse_mass_matrix.shape == (2, 2, 1)
    mean = np.asarray(x, np.float64).reshape(2, 1) / 2
    ess = np.minimum(np.asarray(result.info.ess, np.float64), 1000)
    error = np.abs(np.asarray(result.samples, np.float64).mean(axis=(0, 1)) - mean)
    assert np.all(error < NUM_STDERR * np.sqrt(0.5 / ess)), (error, ess)


# --- jit and vmap -----------------------------------------------------------------------------------


def test_jit_and_vmap_over_datapoints_give_the_per_datapoint_results():
    """The same draws per datapoint, batched and compiled or one at a time. In float64: batching changes
    XLA's rounding, and the warmup's accept/reject decisions and dual averaging amplify it (in float32 a
    relative change of 1e-7 in x moves ε by 10% after 500 steps); after 30 warmup steps (step size and one
    mass-matrix window) float64's 1e-16 has grown to about 1e-11, while a wrong key or datapoint is O(1).
    R̂ is compared to 0.01: its tail part ranks |z - median z|, and of an even number of draws (split chains
    always have one) the two middle ones are equally far from the median, a tie that rounding breaks either
    way, moving R̂ by a swap of two ranks (by 1e-3 here)."""
    static = ("model", "num_samples", "num_warmup", "num_chains", "algorithm", "num_integration_steps")
    sizes = {"num_samples": 50, "num_warmup": 30, "num_chains": 2}
    with jax.enable_x64(True):
        params, x = factor_analysis(jnp.float64)
        _, other = lvmjax.sample(jax.random.key(5), linear_gaussian.model, params)
        data, keys = jnp.stack([x, other]), jax.random.split(KEY, 2)
        jitted = jax.jit(sample_posterior, static_argnames=static)
        batched = jax.vmap(lambda key, x_i: jitted(key, linear_gaussian.model, params, x_i, **sizes))(keys, data)
        for i in range(2):
            single = sample_posterior(keys[i], linear_gaussian.model, params, data[i], **sizes)
            assert single.samples.dtype == jnp.float64
            expected = {"samples": single.samples, **single.info._asdict()}
            actual = {"samples": batched.samples, **batched.info._asdict()}
            for name, value in expected.items():
                tolerance = 0.01 if name == "rhat" else 1e-8
                np.testing.assert_allclose(actual[name][i], value, rtol=tolerance, atol=tolerance, err_msg=name)


# --- Bad input --------------------------------------------------------------------------------------


def _call(**changes):
    params, x = factor_analysis()
    arguments = {
        "key": KEY,
        "model": linear_gaussian.model,
        "params": params,
        "x": x,
        "num_samples": 10,
        "num_warmup": 10,
        "num_chains": 2,
        "algorithm": "nuts",
    }
    arguments.update(changes)
    return sample_posterior(**arguments)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"num_samples": 0}, ArgumentError, "num_samples must be at least 1, got 0"),
        ({"num_samples": 2.5}, ArgumentTypeError, "num_samples must be an int"),
        ({"num_chains": 0}, ArgumentError, "num_chains must be at least 1, got 0"),
        ({"num_warmup": -1}, ArgumentError, "num_warmup must be at least 0, got -1"),
        ({"num_integration_steps": 0}, ArgumentError, "num_integration_steps must be at least 1, got 0"),
        ({"algorithm": "mala"}, ArgumentError, "algorithm must be 'nuts' or 'hmc', got 'mala'"),
        ({"target_acceptance": 1.5}, ArgumentError, "target_acceptance must be between 0 and 1"),
        ({"x": jnp.full(6, jnp.nan)}, ArgumentError, "x contains non-finite values"),
        ({"x": jnp.zeros((2, 6))}, ArgumentError, "use jax.vmap"),
        ({"model": (linear_gaussian.prior, linear_gaussian.likelihood)}, ArgumentTypeError, "LatentVariableModel"),
    ],
)
def test_bad_input_raises_one_clear_error(changes, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _call(**changes)


def test_non_finite_params_are_named():
    params, _ = factor_analysis()
    params = params._replace(noise_variance=params.noise_variance.at[0].set(jnp.inf))
    with pytest.raises(ArgumentError, match=r"params\.noise_variance contains non-finite values"):
        _call(params=params)


def test_discrete_latents_are_refused_with_the_exact_alternative():
    params, x = make_gaussian_mixture()
    with pytest.raises(ArgumentTypeError, match=r"continuous latents.*log_marginal_exact.*importance sampling"):
        _call(model=gaussian_mixture.model, params=params, x=x)

"""Semi-amortized inference and the amortization gap: refinement never lowers the ELBO, and the gaps add up."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lvmjax
from lvmjax import amortized, semi_amortized, training

pytestmark = pytest.mark.standard_promotion


def test_refined_elbo_is_never_below_the_amortized_one():
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.random((64, 16)) < 0.3, jnp.float32)
    vae = amortized.make_vae(16, 3, hidden=(32,))
    params = vae.init(jax.random.PRNGKey(0))
    optimizer = optax.adam(3e-3)
    epoch = jax.jit(training.make_epoch(training.make_train_step(amortized.elbo_objective(vae), optimizer), 16))
    state = training.init_train_state(params, optimizer)
    for key in jax.random.split(jax.random.PRNGKey(1), 5):
        state, _ = epoch(state, key, data)
    subset = data[:24].at[1].set(data[0])  # two identical datapoints
    gap = jax.jit(
        lambda key: semi_amortized.amortization_gap(
            key, vae, state.params, subset, refine_steps=50, marginal_samples=500, chunk_size=100
        )
    )
    report = gap(jax.random.PRNGKey(2))
    # Independent draws per datapoint: the same x gets two different Monte Carlo ELBOs, so that
    # the mean over datapoints averages the error away instead of repeating one draw's.
    assert report.amortized_elbo[0] != report.amortized_elbo[1]
    assert np.all(report.refined_elbo >= report.amortized_elbo)
    assert float(jnp.mean(report.amortization_gap)) > 0.05  # refinement really improves q
    # log p(x) estimate lies above the refined ELBO on average: the approximation gap is non-negative
    assert float(jnp.mean(report.approximation_gap)) > -3 * float(jnp.mean(report.log_marginal_stderr))
    np.testing.assert_allclose(
        report.log_marginal - report.amortized_elbo, report.approximation_gap + report.amortization_gap, rtol=1e-5
    )

    # The trace of the refinement: step t's ELBO estimate at the φ_i it started from (step 0: the
    # encoder's φ(x_i), with step 0's key for datapoint i), and the same refined φ as without it.
    num_steps = 50
    refine = jax.jit(semi_amortized.refine, static_argnames=("amortized", "num_steps", "return_trace"))
    refined, trace = refine(jax.random.PRNGKey(3), vae, state.params, subset, num_steps, return_trace=True)
    assert trace.shape == (num_steps, subset.shape[0])
    without = refine(jax.random.PRNGKey(3), vae, state.params, subset, num_steps)
    for got, want in zip(jax.tree_util.tree_leaves(refined), jax.tree_util.tree_leaves(without), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    first_keys = jax.random.split(jax.random.split(jax.random.PRNGKey(3), num_steps)[0], subset.shape[0])
    phi_0 = jax.vmap(vae.encoder_output, in_axes=(None, 0))(state.params, subset)
    first = jax.vmap(
        lambda key, phi, x: lvmjax.elbo(key, vae.model, state.params, vae.family.distribution(phi), x, analytic_kl=True)
    )(first_keys, phi_0, subset)
    np.testing.assert_allclose(trace[0], first, rtol=1e-5)
    # One-sample estimates with an analytic KL: their mean over 24 datapoints climbs by more than 4 of
    # its standard errors from the first 10 steps to the last 10.
    early, late = np.asarray(trace[:10]).mean(0), np.asarray(trace[-10:]).mean(0)
    climb = late - early
    assert climb.mean() > 4 * climb.std(ddof=1) / np.sqrt(len(climb))

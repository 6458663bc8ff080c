"""Richer VAEs: learned priors against what they reduce to, the β-ELBO and its schedules against their
formulas, and the STL and DReG gradients against the exact posterior and the plain estimators."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import make_linear_gaussian
from jax.scipy.special import logsumexp

from lvmjax import amortized, estimators, semi_amortized, training, variational
from lvmjax.errors import ArgumentError
from lvmjax.models import linear_gaussian

# optax's step counts mix integers with floats.
pytestmark = pytest.mark.standard_promotion

DATA_DIM, LATENT_DIM, NUM_DATA = 6, 2, 5
DATA = (jax.random.uniform(jax.random.key(0), (NUM_DATA, DATA_DIM)) > 0.5).astype(jnp.float32)
Z = jnp.array([0.4, -1.3])


def _vae(posterior="diagonal", prior="normal", components=NUM_DATA):
    return amortized.make_vae(
        DATA_DIM, LATENT_DIM, hidden=(8,), posterior=posterior, prior=prior, prior_components=components
    )


@pytest.mark.parametrize("posterior", ["diagonal", "full-rank"])
def test_the_vamp_prior_with_the_training_data_as_pseudo_inputs_is_their_aggregate_posterior(posterior):
    vae = _vae(posterior, "vamp")
    params = vae.init(jax.random.key(1))
    params["prior"]["pseudo_inputs"] = DATA
    log_q = jax.vmap(lambda x: vae.encode(params, x).log_prob(Z))(DATA)
    expected = logsumexp(log_q) - np.log(NUM_DATA)  # log (1/N) Σ_i q(z | x_i)
    prior = vae.model.prior(params)
    np.testing.assert_allclose(prior.log_prob(Z), expected, rtol=1e-6)
    # Its draws have the aggregate posterior's mean and covariance (the mean of the q's second moments).
    draws = np.asarray(prior.sample(seed=jax.random.key(2), sample_shape=20000), np.float64)
    posteriors = [vae.encode(params, x) for x in DATA]
    mean = np.mean([q.mean() for q in posteriors], axis=0)
    second = np.mean([q.covariance() + np.outer(q.mean(), q.mean()) for q in posteriors], axis=0)
    stderr = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * stderr)
    np.testing.assert_allclose(draws.T @ draws / len(draws), second, atol=0.05 * np.abs(second).max())


def test_the_vamp_prior_of_a_flow_posterior_mixes_its_base_gaussians():
    vae = _vae("realnvp", "vamp")
    params = vae.init(jax.random.key(1))
    params["prior"]["pseudo_inputs"] = DATA
    bases = jax.vmap(lambda x: vae.encode(params, x).distribution.log_prob(Z))(DATA)
    np.testing.assert_allclose(vae.model.prior(params).log_prob(Z), logsumexp(bases) - np.log(NUM_DATA), rtol=1e-6)


def test_a_mixture_prior_of_one_component_is_that_gaussian_and_at_zero_the_standard_normal():
    vae, normal = _vae(prior="mixture", components=1), _vae()
    params = vae.init(jax.random.key(1))
    params["prior"] = {
        "logits": jnp.array([0.7]),
        "means": jnp.array([[1.0, -2.0]]),
        "log_scales": jnp.array([[0.3, -0.5]]),
    }
    gaussian = distrax.MultivariateNormalDiag(jnp.array([1.0, -2.0]), jnp.exp(jnp.array([0.3, -0.5])))
    np.testing.assert_allclose(vae.model.prior(params).log_prob(Z), gaussian.log_prob(Z), rtol=1e-6)
    # With N(0, I) as its one component the ELBO is the normal prior's, draw for draw (Monte Carlo KL).
    params["prior"] = {"logits": jnp.zeros(1), "means": jnp.zeros((1, 2)), "log_scales": jnp.zeros((1, 2))}
    normal_params = {"encoder": params["encoder"], "decoder": params["decoder"]}
    key = jax.random.key(2)
    np.testing.assert_allclose(
        amortized.elbo_objective(vae, 4)(key, params, DATA[0]),
        amortized.elbo_objective(normal, 4, analytic_kl=False)(key, normal_params, DATA[0]),
        rtol=1e-6,
    )
    assert vae.analytic_kl is False and normal.analytic_kl is True
    with pytest.raises(ArgumentError, match="closed-form KL"):
        amortized.elbo_objective(vae, analytic_kl=True)


def test_the_beta_elbo_with_free_bits_is_its_formula():
    vae = _vae()
    params = vae.init(jax.random.key(1))
    key, x, beta, free_bits = jax.random.key(2), DATA[1], 0.5, 0.2
    value = amortized.elbo_objective(vae, 8, beta=beta, free_bits=free_bits)(key, params, x)
    q = vae.encode(params, x)
    z, _ = estimators._sample_latents(key, q, 8)
    reconstruction = jnp.mean(jax.vmap(lambda z_k: vae.model.likelihood(params, z_k).log_prob(x))(z))
    kl = distrax.Normal(q.loc, q.scale_diag).kl_divergence(distrax.Normal(0.0, 1.0))  # one per dimension
    np.testing.assert_allclose(value, reconstruction - beta * jnp.sum(jnp.maximum(free_bits, kl)), rtol=1e-6)
    plain = amortized.elbo_objective(vae, 8, beta=1.0)(key, params, x)
    np.testing.assert_allclose(plain, reconstruction - jnp.sum(kl), rtol=1e-5)


def test_a_kl_warm_up_trains_on_the_scheduled_beta_of_each_step():
    vae = _vae("full-rank")
    params = vae.init(jax.random.key(1))
    schedule = optax.linear_schedule(0.0, 1.0, 4)
    objective = amortized.elbo_objective(vae, beta=schedule)
    assert isinstance(objective, training.ScheduledObjective)
    step = jax.jit(training.make_train_step(objective, optax.sgd(0.0)))  # a zero rate: the step only reports
    state = training.init_train_state(params, optax.sgd(0.0))
    key = jax.random.key(3)
    for count, beta in ((0, 0.0), (3, 0.75)):
        state = state._replace(step=jnp.asarray(count, jnp.int32))
        _, info = step(state, key, DATA)
        expected = training.batch_objective(amortized.elbo_objective(vae, beta=beta))(params, key, DATA)
        np.testing.assert_allclose(info.objective, expected, rtol=1e-6)


# --- STL and DReG, on the linear-Gaussian model, whose posterior is a Gaussian known exactly ---

PARAMS, X = make_linear_gaussian()
FAMILY = variational.full_rank_gaussian(2)


def _phi_of(posterior: distrax.Distribution) -> dict:
    scale_tril = jnp.linalg.cholesky(posterior.covariance())
    return {"mean": posterior.mean(), "log_diag": jnp.log(jnp.diag(scale_tril)), "off_diag": scale_tril}


EXACT_PHI = _phi_of(linear_gaussian.posterior(PARAMS, X))
OFF_PHI = {  # a q near the posterior but not at it
    "mean": EXACT_PHI["mean"] + 0.3,
    "log_diag": EXACT_PHI["log_diag"] - 0.2,
    "off_diag": EXACT_PHI["off_diag"] * 0.5,
}


def _elbo(key, theta, phi, gradient):
    return estimators.elbo(key, linear_gaussian.model, theta, FAMILY.distribution(phi), X, 4, gradient=gradient)


def _iwae(key, theta, phi, gradient):
    return estimators.iwae_bound(key, linear_gaussian.model, theta, FAMILY.distribution(phi), X, 4, gradient)


@pytest.mark.parametrize(("bound", "gradient"), [(_elbo, "stl"), (_iwae, "dreg")])
def test_stl_and_dreg_keep_the_value_and_vanish_at_the_exact_posterior(bound, gradient):
    key = jax.random.key(4)
    value_and_grad = jax.value_and_grad(bound, argnums=(1, 2))
    (plain, (plain_theta, plain_phi)) = value_and_grad(key, PARAMS, EXACT_PHI, "reparam")
    (value, (theta, phi)) = value_and_grad(key, PARAMS, EXACT_PHI, gradient)
    np.testing.assert_allclose(value, plain, rtol=1e-6)
    # q = p(z | x): every log-weight is log p(x), whatever the draw, so the path gradient is zero; the plain
    # estimator still carries the score term, zero only in expectation.
    assert all(np.abs(leaf).max() < 1e-4 for leaf in jax.tree.leaves(phi))
    assert max(np.abs(leaf).max() for leaf in jax.tree.leaves(plain_phi)) > 0.1
    for ours, theirs in zip(jax.tree.leaves(theta), jax.tree.leaves(plain_theta), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)  # ∇_θ is the plain one


@pytest.mark.parametrize(("bound", "gradient"), [(_elbo, "stl"), (_iwae, "dreg")])
def test_stl_and_dreg_are_unbiased_for_the_gradient_away_from_the_posterior(bound, gradient):
    keys = jax.random.split(jax.random.key(5), 4000)

    def grads(gradient):
        one = jax.grad(lambda phi, key: bound(key, PARAMS, phi, gradient))
        return jax.vmap(one, in_axes=(None, 0))(OFF_PHI, keys)

    plain, ours = grads("reparam"), grads(gradient)
    for name in ("mean", "log_diag"):
        difference = np.asarray(ours[name] - plain[name], np.float64)  # the same draws: a paired comparison
        stderr = difference.std(axis=0) / np.sqrt(len(keys))
        assert np.all(np.abs(difference.mean(axis=0)) <= 4 * stderr + 1e-6)
        assert np.all(stderr > 1e-4)  # the two estimators differ draw by draw


def test_refinement_steps_a_flow_ten_times_more_gently_than_a_gaussian():
    for posterior, rate in (("diagonal", 1e-2), ("full-rank", 1e-2), ("iaf", 1e-3)):
        vae = _vae(posterior)
        params = vae.init(jax.random.key(0))
        phi = jax.vmap(vae.encoder_output, in_axes=(None, 0))(params, DATA)
        assert semi_amortized._default_learning_rate(vae, phi) == rate


def test_stl_and_dreg_refuse_what_they_cannot_use():
    with pytest.raises(ArgumentError, match="analytic_kl=False"):
        estimators.elbo(
            jax.random.key(0), linear_gaussian.model, PARAMS, FAMILY.distribution(EXACT_PHI), X, 2, True, "stl"
        )
    with pytest.raises(ArgumentError, match="one of reparam, dreg"):
        amortized.iwae_objective(_vae(), 5, "stl")
    iaf = _vae("iaf")
    params = iaf.init(jax.random.key(0))
    with pytest.raises(ArgumentError, match="sequential"):
        amortized.iwae_objective(iaf, 2, "dreg")(jax.random.key(0), params, DATA[0])

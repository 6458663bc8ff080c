"""VAEs, IWAEs and the autoencoder on tiny data: shapes, objectives, and learning."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lvmjax
from lvmjax import amortized, training

pytestmark = pytest.mark.standard_promotion


@pytest.fixture(scope="module")
def binary_data():
    """Two prototypes with pixel noise: a VAE can learn them quickly."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((2, 16)) < 0.5
    labels = rng.integers(0, 2, 256)
    flips = rng.random((256, 16)) < 0.05
    return jnp.asarray(prototypes[labels] ^ flips, jnp.float32)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_networks_give_one_distribution_per_datapoint(architecture, likelihood):
    vae = amortized.make_vae(64, 3, likelihood=likelihood, architecture=architecture, hidden=(32,), image_shape=(8, 8))
    params = vae.init(jax.random.PRNGKey(0))
    x = jnp.zeros(64)
    q = vae.encode(params, x)
    assert q.event_shape == (3,) and q.batch_shape == ()
    assert vae.model.likelihood(params, jnp.zeros(3)).event_shape == (64,)
    assert amortized.reconstruct(vae, params, x).shape == (64,)
    assert amortized.interpolate(vae, params, x, x + 1, 5).shape == (5, 64)
    z, sample = lvmjax.sample(jax.random.PRNGKey(1), vae.model, params)
    assert z.shape == (3,) and sample.shape == (64,)
    images = jax.vmap(lambda key: amortized.generate(key, vae, params))(jax.random.split(jax.random.PRNGKey(2), 100))
    assert images.shape == (100, 64)
    if likelihood == "bernoulli":  # pixel probabilities
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_fixed_observation_scale_is_used():
    vae = amortized.make_vae(4, 2, likelihood="gaussian", observation_scale=0.3, hidden=(8,))
    params = vae.init(jax.random.PRNGKey(0))
    np.testing.assert_allclose(vae.model.likelihood(params, jnp.zeros(2)).stddev(), 0.3, rtol=1e-6)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="likelihood must be 'bernoulli' or 'gaussian'"):
        amortized.make_vae(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match=r"needs image_shape \(H, W\) with H·W = 64"):
        amortized.make_vae(64, 2, architecture="conv")
    with pytest.raises(ValueError, match="divisible by 4"):
        amortized.make_vae(36, 2, architecture="conv", image_shape=(6, 6))
    with pytest.raises(
        ValueError, match=r"activation must be one of \['gelu', 'relu', 'softplus', 'tanh'\], got 'sigmoid'"
    ):
        amortized.make_vae(4, 2, activation="sigmoid")


@pytest.mark.parametrize("activation", ["gelu", "tanh", "relu"])
def test_the_mlp_activation_is_the_one_named(activation):
    vae = amortized.make_vae(5, 2, hidden=(3,), activation=activation)
    params = vae.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5,))
    layers = params["encoder"]["params"]
    nonlinearity = {"gelu": jax.nn.gelu, "tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    hidden = nonlinearity(x @ layers["Dense_0"]["kernel"] + layers["Dense_0"]["bias"])
    out = hidden @ layers["Dense_1"]["kernel"] + layers["Dense_1"]["bias"]
    np.testing.assert_allclose(vae.encoder_output(params, x)["mean"], out[:2], rtol=1e-6)
    np.testing.assert_allclose(vae.encoder_output(params, x)["log_scale"], out[2:], rtol=1e-6)


def test_log_marginal_is_exact_when_the_encoder_is_the_posterior():
    """With q(z | x) = p(z | x) every importance weight equals p(x), so any K gives log p(x) exactly.

    A linear-Gaussian model whose W has orthogonal columns and whose noise is isotropic has a
    diagonal posterior covariance (σ² (σ² I + WᵀW)⁻¹), which the mean-field encoder can represent.
    """
    rng = np.random.default_rng(0)
    weight = np.linalg.qr(rng.normal(size=(6, 2)))[0] * np.array([2.0, 0.7])
    params = lvmjax.models.linear_gaussian.Params(
        jnp.asarray(weight, jnp.float32), jnp.asarray(rng.normal(size=6), jnp.float32), jnp.full(6, 0.3, jnp.float32)
    )

    def encoder_output(params, x):
        posterior = lvmjax.models.linear_gaussian.posterior(params, x)
        return {"mean": posterior.mean(), "log_scale": 0.5 * jnp.log(jnp.diag(posterior.covariance()))}

    exact_encoder = amortized.AmortizedModel(
        lvmjax.models.linear_gaussian.model, lvmjax.variational.mean_field_gaussian(2), encoder_output, None, 2
    )
    x = jnp.asarray(rng.normal(size=6), jnp.float32)
    for chunk_size in (None, 10):
        estimate = jax.jit(amortized.log_marginal, static_argnums=(1, 4, 5))(
            jax.random.PRNGKey(3), exact_encoder, params, x, 50, chunk_size
        )
        np.testing.assert_allclose(
            estimate.log_marginal, lvmjax.models.linear_gaussian.log_marginal(params, x), rtol=1e-5
        )
        assert float(estimate.stderr) < 1e-4


def test_log_marginal_uses_the_encoder_as_the_proposal():
    vae = amortized.make_vae(8, 2, hidden=(4,))
    params = vae.init(jax.random.PRNGKey(0))
    x = (jnp.arange(8) % 3 == 0).astype(jnp.float32)

    @jax.jit
    def both(key, params, x):
        return (
            amortized.log_marginal(key, vae, params, x, 20, chunk_size=5),
            lvmjax.log_marginal_is(key, vae.model, params, vae.encode(params, x), x, 20, chunk_size=5),
        )

    ours, direct = both(jax.random.PRNGKey(1), params, x)
    np.testing.assert_array_equal(ours.log_marginal, direct.log_marginal)


@pytest.mark.parametrize("name", ["vae", "iwae", "ae"])
def test_training_improves_the_objective(binary_data, name):
    vae = amortized.make_vae(16, 2, hidden=(32,))
    objective = {
        "vae": amortized.elbo_objective(vae),
        "iwae": amortized.iwae_objective(vae, 5),
        "ae": amortized.autoencoder_objective(vae),
    }[name]
    optimizer = optax.adam(3e-3)
    state = training.init_train_state(vae.init(jax.random.PRNGKey(0)), optimizer)
    epoch = jax.jit(training.make_epoch(training.make_train_step(objective, optimizer), 32))
    values = []
    for key in jax.random.split(jax.random.PRNGKey(1), 15):
        state, info = epoch(state, key, binary_data)
        values.append(float(info.objective.mean()))
    assert values[-1] > values[0] + 2.0, values
    if name != "ae":
        # The trained model's exact-ish log p(x) beats the untrained one's.
        def nll(params):
            estimate = jax.vmap(
                lambda k, x: lvmjax.log_marginal_is(k, vae.model, params, vae.encode(params, x), x, 200).log_marginal
            )
            return -float(jnp.mean(estimate(jax.random.split(jax.random.PRNGKey(2), 64), binary_data[:64])))

        assert nll(state.params) < nll(vae.init(jax.random.PRNGKey(0))) - 2.0


def test_autoencoder_objective_is_deterministic_reconstruction(binary_data):
    vae = amortized.make_vae(16, 2, hidden=(32,))
    params = vae.init(jax.random.PRNGKey(0))
    objective = amortized.autoencoder_objective(vae)
    x = binary_data[0]
    value = objective(jax.random.PRNGKey(0), params, x)
    assert value == objective(jax.random.PRNGKey(1), params, x)
    probabilities = amortized.reconstruct(vae, params, x)
    expected = jnp.sum(x * jnp.log(probabilities) + (1 - x) * jnp.log1p(-probabilities))
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_bernoulli_logits_log_prob_is_distrax_at_any_logit_and_exact_for_binary_data():
    logits = jnp.asarray([-80.0, -30.0, -17.0, -3.0, -1e-3, 0.0, 2e-4, 0.7, 5.0, 17.0, 30.0, 80.0], jnp.float32)
    exact = {
        1.0: -np.logaddexp(0.0, -np.asarray(logits, np.float64)),  # log σ(l), in float64
        0.0: -np.logaddexp(0.0, np.asarray(logits, np.float64)),
    }  # log σ(−l)
    ours = amortized.BernoulliLogits(logits=logits, dtype=jnp.float32)
    for x, reference in exact.items():
        value = ours.log_prob(jnp.full(logits.shape, x, jnp.float32))
        np.testing.assert_allclose(value, reference, rtol=2e-7, atol=1e-30)  # rounding, even at e^-80
    grey = jnp.linspace(0.0, 1.0, logits.size)  # soft targets: the same function as distrax's
    np.testing.assert_allclose(ours.log_prob(grey), distrax.Bernoulli(logits=logits).log_prob(grey), rtol=1e-6)
    vae = amortized.make_vae(4, 2)  # the VAE's decoder uses it
    likelihood = vae.model.likelihood(vae.init(jax.random.PRNGKey(0)), jnp.zeros(2))
    assert isinstance(likelihood.distribution, amortized.BernoulliLogits)

"""Bad input gets a clear error naming the argument, at trace time where possible."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make_gaussian_mixture, make_linear_gaussian

import lvmjax
from lvmjax import _validation
from lvmjax.errors import DataError
from lvmjax.models import gaussian_mixture, linear_gaussian

KEY = jax.random.PRNGKey(0)
PARAMS, X = make_linear_gaussian()
MODEL = linear_gaussian.model
Q = distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))

ESTIMATORS = {
    "log_weights": lambda q, x, k, params=PARAMS: lvmjax.log_weights(KEY, MODEL, params, q, x, k),
    "elbo": lambda q, x, k, params=PARAMS: lvmjax.elbo(KEY, MODEL, params, q, x, k),
    "iwae_bound": lambda q, x, k, params=PARAMS: lvmjax.iwae_bound(KEY, MODEL, params, q, x, k),
    "log_marginal_is": lambda q, x, k, params=PARAMS: lvmjax.log_marginal_is(KEY, MODEL, params, q, x, k),
}
each_estimator = pytest.mark.parametrize("estimator", list(ESTIMATORS.values()), ids=list(ESTIMATORS))


@each_estimator
def test_a_batch_of_datapoints_is_refused_with_a_hint_to_vmap(estimator):
    with pytest.raises(ValueError, match=r"x has shape \(5, 4\).*event_shape \(4,\).*jax.vmap"):
        estimator(Q, jnp.stack([X] * 5), 3)


@each_estimator
def test_x_of_the_wrong_size_is_refused(estimator):
    message = r"x has shape \(3,\), but model.likelihood\(params, z\) has event_shape \(4,\)"
    with pytest.raises(ValueError, match=message):
        estimator(Q, X[:3], 3)


@each_estimator
def test_q_over_the_wrong_latent_shape_is_refused(estimator):
    q = distrax.MultivariateNormalDiag(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"q is a distribution over latents of shape \(3,\).*event_shape is \(2,\)"):
        estimator(q, X, 3)


@each_estimator
def test_a_batched_q_is_refused(estimator):
    q = distrax.Normal(jnp.zeros(2), jnp.ones(2))  # batch_shape (2,), event_shape ()
    with pytest.raises(ValueError, match=r"q must be ONE distribution.*batch_shape \(2,\).*MultivariateNormalDiag"):
        estimator(q, X, 3)


@each_estimator
def test_q_that_is_not_a_distribution_is_refused(estimator):
    with pytest.raises(TypeError, match=r"q must be a distrax.Distribution, got tuple"):
        estimator((jnp.zeros(2), jnp.ones(2)), X, 3)


@each_estimator
@pytest.mark.parametrize(
    ("num_samples", "error", "message"),
    [
        (0, ValueError, "num_samples must be at least 1, got 0"),
        (-3, ValueError, "num_samples must be at least 1, got -3"),
        (2.5, TypeError, "num_samples must be an int, got float 2.5"),
        (True, TypeError, "num_samples must be an int, got the bool True"),
    ],
)
def test_bad_sample_counts_are_refused(estimator, num_samples, error, message):
    with pytest.raises(error, match=message):
        estimator(Q, X, num_samples)


def test_a_traced_sample_count_asks_for_a_static_argument():
    jitted = jax.jit(lambda k: lvmjax.elbo(KEY, MODEL, PARAMS, Q, X, k))
    with pytest.raises(TypeError, match=r"num_samples must be a static Python int.*static_argnames"):
        jitted(3)


@each_estimator
@pytest.mark.parametrize("where", ["params", "x", "q"])
def test_non_finite_values_are_named(estimator, where):
    params, x, q = PARAMS, X, Q
    if where == "params":
        params = PARAMS._replace(bias=PARAMS.bias.at[1].set(jnp.nan))
        message = r"params.bias contains non-finite values"
    elif where == "x":
        x = X.at[0].set(jnp.inf)
        message = r"^x contains non-finite values"
    else:
        q = distrax.MultivariateNormalDiag(jnp.array([0.0, jnp.nan]), jnp.ones(2))
        message = r"^q.* contains non-finite values"
    with pytest.raises(ValueError, match=message):
        estimator(q, x, 3, params=params)


@pytest.mark.parametrize(
    ("chunk_size", "message"),
    [
        (0, "chunk_size must be at least 1, got 0"),
        (2000, "chunk_size=2000 is larger than num_samples=1000"),
        (
            300,
            "chunk_size=300 does not divide num_samples=1000 into equal chunks; the nearest divisors are 250 and 500",
        ),
        (1.5, "chunk_size must be an int"),
    ],
)
def test_chunk_sizes_that_do_not_split_the_work_are_refused(chunk_size, message):
    with pytest.raises((ValueError, TypeError), match=message):
        lvmjax.log_marginal_is(KEY, MODEL, PARAMS, Q, X, 1000, chunk_size=chunk_size)
    with pytest.raises((ValueError, TypeError), match=message):
        lvmjax.log_marginal_naive_mc(KEY, MODEL, PARAMS, X, 1000, chunk_size=chunk_size)


def test_shape_errors_are_raised_while_tracing_under_jit():
    jitted = jax.jit(lambda x: lvmjax.iwae_bound(KEY, MODEL, PARAMS, Q, x, 4))
    with pytest.raises(ValueError, match=r"jax.vmap"):
        jitted(jnp.stack([X, X]))


def test_discrete_q_with_reparameterized_gradients_is_refused():
    params, x = make_gaussian_mixture()
    q = gaussian_mixture.posterior(params, x)
    with pytest.raises(ValueError, match=r"cannot be reparameterized.*gradient='score'"):
        lvmjax.elbo(KEY, gaussian_mixture.model, params, q, x, 3)
    with pytest.raises(ValueError, match=r"cannot be reparameterized.*log_marginal_is"):
        lvmjax.iwae_bound(KEY, gaussian_mixture.model, params, q, x, 3)


def test_q_and_prior_of_different_kinds_are_refused():
    params, x = make_gaussian_mixture()
    q = distrax.Normal(0.0, 1.0)  # a continuous q for a categorical latent
    with pytest.raises(ValueError, match="both must be discrete or both continuous"):
        lvmjax.log_marginal_is(KEY, gaussian_mixture.model, params, q, x, 3)


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="gradient must be 'reparam', 'score' or 'stl', got 'pathwise'"):
        lvmjax.elbo(KEY, MODEL, PARAMS, Q, X, 3, gradient="pathwise")
    with pytest.raises(ValueError, match="proposal must be 'prior' or 'uniform', got 'posterior'"):
        lvmjax.log_marginal_naive_mc(KEY, MODEL, PARAMS, X, 3, proposal="posterior")


def test_enumeration_and_uniform_proposal_need_a_finite_latent_space():
    with pytest.raises(TypeError, match=r"log_marginal_exact needs a finite discrete prior.*MultivariateNormalDiag"):
        lvmjax.log_marginal_exact(MODEL, PARAMS, X)
    with pytest.raises(TypeError, match="proposal='uniform' needs a finite discrete prior"):
        lvmjax.log_marginal_naive_mc(KEY, MODEL, PARAMS, X, 3, proposal="uniform")


def test_analytic_kl_without_a_closed_form_is_refused():
    q = distrax.Transformed(distrax.MultivariateNormalDiag(jnp.zeros(2)), distrax.Block(distrax.Tanh(), 1))
    with pytest.raises(TypeError, match=r"needs a closed-form KL.*none for q = Transformed.*analytic_kl=False"):
        lvmjax.elbo(KEY, MODEL, PARAMS, q, X, 3, analytic_kl=True)


def test_a_model_that_returns_batched_distributions_is_refused():
    def likelihood(params, z):  # forgets to make the D dimensions one event
        return distrax.Normal(params.weight @ z + params.bias, jnp.sqrt(params.noise_variance))

    model = lvmjax.LatentVariableModel(linear_gaussian.prior, likelihood)
    with pytest.raises(ValueError, match=r"model.likelihood\(params, z\) must be ONE distribution.*batch_shape \(4,\)"):
        lvmjax.elbo(KEY, model, PARAMS, Q, X, 3)


def test_model_must_be_a_latent_variable_model():
    with pytest.raises(TypeError, match="model must be a LatentVariableModel, got tuple"):
        lvmjax.elbo(KEY, (linear_gaussian.prior, linear_gaussian.likelihood), PARAMS, Q, X, 3)


def test_reference_models_check_the_datapoint():
    with pytest.raises(ValueError, match=r"x has shape \(2, 4\).*jax.vmap"):
        linear_gaussian.log_marginal(PARAMS, jnp.stack([X, X]))
    with pytest.raises(ValueError, match=r"x has shape \(3,\)"):
        linear_gaussian.posterior(PARAMS, X[:3])
    params, x = make_gaussian_mixture()
    with pytest.raises(ValueError, match=r"x has shape \(5, 2\).*jax.vmap"):
        gaussian_mixture.posterior(params, jnp.stack([x] * 5))


@pytest.mark.parametrize(
    ("values", "name", "message"),
    [
        (
            np.concatenate([np.full(1234, 0.5), np.ones(10)]),
            "x",
            r"^x has 1234 values that are not 0 or 1 \(for example 0\.5\); a Bernoulli likelihood "
            r"needs binary data, so binarize it first \(e\.g\. x >= 0\.5\)$",
        ),
        (
            np.array([0.0, np.nan, 1.0, np.inf]),
            "images",
            r"^images has 2 values that are not 0 or 1 \(for example nan\)",
        ),
        (np.array([0, 255, 1], np.uint8), "counts", r"^counts has 1 values that are not 0 or 1 \(for example 255\)"),
    ],
)
def test_check_binary_refuses_values_other_than_0_and_1_in_one_line(values, name, message):
    with pytest.raises(DataError, match=message) as info:
        _validation.check_binary(values, name)
    assert "\n" not in str(info.value)


def test_check_binary_accepts_0_and_1_of_any_dtype():
    _validation.check_binary(np.array([[0, 1], [1, 0]], np.uint8), "x")
    _validation.check_binary(np.array([0.0, 1.0, 1.0], np.float32), "x")
    _validation.check_binary(np.array([True, False]), "x")

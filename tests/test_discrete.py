"""Enumeration of finite discrete latent spaces and the uniform proposal over them."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import binary_latent_model, make_binary_latent

import lvmjax
from lvmjax import _discrete


@pytest.mark.parametrize(
    ("dist", "num_states", "event_shape"),
    [
        (distrax.Categorical(logits=jnp.zeros(5)), 5, ()),
        (distrax.OneHotCategorical(logits=jnp.zeros(4)), 4, (4,)),
        (distrax.Bernoulli(logits=0.3), 2, ()),
        (distrax.Independent(distrax.Bernoulli(logits=jnp.zeros(6)), 1), 64, (6,)),
        (distrax.Independent(distrax.Bernoulli(logits=jnp.zeros((2, 3))), 2), 64, (2, 3)),
        (distrax.Independent(distrax.Categorical(logits=jnp.zeros((3, 4))), 1), 64, (3,)),
    ],
)
def test_support_lists_every_state_once(dist, num_states, event_shape):
    states = _discrete.support(dist)
    assert states.shape == (num_states, *event_shape)
    assert states.dtype == dist.dtype
    flat = np.asarray(states).reshape(num_states, -1)
    assert len({tuple(row) for row in flat}) == num_states
    # The states exhaust the probability mass. (distrax's log_prob of integer
    # Bernoulli and one-hot samples needs the standard dtype promotion.)
    uniform = _discrete.uniform_over_support(dist)
    with jax.numpy_dtype_promotion("standard"):
        np.testing.assert_allclose(jnp.sum(jnp.exp(jax.vmap(dist.log_prob)(states))), 1.0, rtol=1e-5)
        np.testing.assert_allclose(jax.vmap(uniform.log_prob)(states), -np.log(num_states), rtol=1e-6)
    assert _discrete.num_states(dist) == num_states


def test_too_many_states_is_refused():
    dist = distrax.Independent(distrax.Bernoulli(logits=jnp.zeros(30)), 1)
    with pytest.raises(ValueError, match="2\\^30 = 1073741824 states"):
        _discrete.support(dist)


def test_continuous_prior_is_not_enumerable():
    with pytest.raises(TypeError, match="finite discrete prior"):
        _discrete.support(distrax.MultivariateNormalDiag(jnp.zeros(2)))


def test_integer_bernoulli_latents_work_with_standard_promotion():
    """distrax draws int32 Bernoulli samples by default; enumeration must keep that dtype."""
    params, x = make_binary_latent()

    def prior(params):
        return distrax.Independent(distrax.Bernoulli(logits=params["prior_logits"]), 1)

    model = lvmjax.LatentVariableModel(prior, binary_latent_model.likelihood)
    with jax.numpy_dtype_promotion("standard"):
        exact = lvmjax.log_marginal_exact(model, params, x)
        expected = lvmjax.log_marginal_exact(binary_latent_model, params, x)
    np.testing.assert_allclose(exact, expected, rtol=1e-6)


def test_latent_states_are_the_terms_of_the_exact_marginal():
    """Σ over `lvmjax.latent_states` of p(x, z) is p(x): the posterior over them sums to 1, and the
    states are the 2^d binary vectors, z_1 most significant."""
    params, x = make_binary_latent()
    states = lvmjax.latent_states(binary_latent_model, params)
    num_latents = params["prior_logits"].shape[0]
    expected = (np.arange(2**num_latents)[:, None] >> np.arange(num_latents)[::-1]) & 1
    np.testing.assert_array_equal(np.asarray(states), expected)
    log_joints = jax.vmap(lambda z: lvmjax.log_joint(binary_latent_model, params, x, z))(states)
    exact = lvmjax.log_marginal_exact(binary_latent_model, params, x)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_joints - exact)), 1.0, rtol=1e-5)
    gaussian = lvmjax.LatentVariableModel(
        lambda params: distrax.MultivariateNormalDiag(jnp.zeros(2)), binary_latent_model.likelihood
    )
    with pytest.raises(TypeError, match=r"^latent_states needs a finite discrete prior"):
        lvmjax.latent_states(gaussian, params)

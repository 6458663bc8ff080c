"""The training step factory and the scanned epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvmjax import training

pytestmark = pytest.mark.standard_promotion


def quadratic_objective(key, params, x):
    """-(x - w)² / 2 plus noise-free key use: its maximizer is the data mean."""
    del key
    return -0.5 * jnp.sum((x - params["w"]) ** 2)


def test_one_step_is_gradient_ascent_on_the_batch_mean():
    optimizer = optax.sgd(0.1)
    step = jax.jit(training.make_train_step(quadratic_objective, optimizer))
    state = training.init_train_state({"w": jnp.zeros(3)}, optimizer)
    batch = jnp.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    state, metrics = step(state, jax.random.PRNGKey(0), batch)
    # ∇_w mean objective = mean(x) - w = (2, 2, 2); w ← 0 + 0.1 · (2, 2, 2)
    np.testing.assert_allclose(state.params["w"], [0.2, 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(metrics.objective, -0.5 * (1 + 4 + 9 + 9 + 4 + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics.grad_norm, np.sqrt(12.0), rtol=1e-6)
    assert int(state.step) == 1


def test_epoch_visits_each_datapoint_at_most_once_and_converges():
    data = jnp.arange(50.0)[:, None] * jnp.ones((1, 2))
    seen = []

    def recording_step(state, key, batch):
        return state, batch[:, 0]

    epoch = jax.jit(training.make_epoch(recording_step, 8))
    _, batches = epoch(0, jax.random.PRNGKey(0), data)
    assert batches.shape == (6, 8)  # 50 // 8 full minibatches
    seen = np.asarray(batches).ravel()
    assert len(set(seen.tolist())) == 48

    optimizer = optax.sgd(lambda count: 1.0 / (count + 1))  # w_t: the running mean of the batch means
    epoch = jax.jit(training.make_epoch(training.make_train_step(quadratic_objective, optimizer), 10))
    state = training.init_train_state({"w": jnp.zeros(2)}, optimizer)
    for key in jax.random.split(jax.random.PRNGKey(1), 60):
        state, _ = epoch(state, key, data)
    np.testing.assert_allclose(state.params["w"], data.mean(0), rtol=0.02)


def test_epoch_accepts_a_pytree_of_data_and_refuses_a_batch_larger_than_the_data():
    def step(state, key, batch):
        indices, x = batch
        return state + jnp.sum(x[:, 0] - indices), None

    epoch = training.make_epoch(step, 4)
    state, _ = epoch(jnp.zeros(()), jax.random.PRNGKey(0), (jnp.arange(12.0), jnp.arange(12.0)[:, None]))
    assert float(state) == 0.0
    with pytest.raises(ValueError, match="batch_size=4 is larger than the 3 datapoints"):
        epoch(jnp.zeros(()), jax.random.PRNGKey(0), jnp.zeros((3, 1)))

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


def assert_same_tree(first, second):
    for left, right in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def root_objective(key, params, x):
    """−Σ sqrt(|w − x|): finite at w = x, where its gradient is infinite."""
    del key
    return -jnp.sum(jnp.sqrt(jnp.abs(params["w"] - x)))


@pytest.mark.parametrize(("objective", "poison"), [
    (quadratic_objective, lambda w: jnp.array([[1.0, jnp.nan, 3.0]])),  # NaN objective and gradient
    (root_objective, lambda w: w[None]),  # x = w: finite objective, infinite gradient, so Adam's update is NaN
], ids=["nan_objective", "infinite_gradient"])
def test_a_non_finite_step_changes_nothing_and_says_so(objective, poison):
    optimizer = optax.adam(0.1)
    step = jax.jit(training.make_train_step(objective, optimizer))
    state = training.init_train_state({"w": jnp.zeros(3)}, optimizer)
    good = jnp.array([[1.0, 2.0, 3.0]])
    state, metrics = step(state, jax.random.PRNGKey(0), good)
    assert not bool(metrics.skipped) and int(state.step) == 1
    poisoned_batch = poison(state.params["w"])
    after, metrics = step(state, jax.random.PRNGKey(1), poisoned_batch)
    assert bool(metrics.skipped) and int(after.step) == 1
    assert_same_tree(after, state)  # parameters and Adam's moments untouched
    after, metrics = step(after, jax.random.PRNGKey(2), good)  # and training goes on
    assert not bool(metrics.skipped) and int(after.step) == 2
    assert bool(training.all_finite(after))
    # Without the guard the same step poisons the parameters for good.
    unguarded = jax.jit(training.make_train_step(objective, optimizer, skip_nonfinite=False))
    poisoned, metrics = unguarded(state, jax.random.PRNGKey(1), poisoned_batch)
    assert not bool(metrics.skipped) and not bool(training.all_finite(poisoned.params))

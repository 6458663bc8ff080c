"""The guarded ascent update, the training step and its (init, step) pair, and the scanned epoch."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvmjax import svi, training
from lvmjax.models import linear_gaussian
from lvmjax.variational import mean_field_gaussian

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
    state, info = step(state, jax.random.PRNGKey(0), batch)
    # ∇_w mean objective = mean(x) - w = (2, 2, 2); w ← 0 + 0.1 · (2, 2, 2)
    np.testing.assert_allclose(state.params["w"], [0.2, 0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(info.objective, -0.5 * (1 + 4 + 9 + 9 + 4 + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, np.sqrt(12.0), rtol=1e-6)
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


@pytest.mark.parametrize(
    ("objective", "poison"),
    [
        (quadratic_objective, lambda w: jnp.array([[1.0, jnp.nan, 3.0]])),  # NaN objective and gradient
        (root_objective, lambda w: w[None]),  # x = w: finite objective, infinite gradient, so Adam's update is NaN
    ],
    ids=["nan_objective", "infinite_gradient"],
)
def test_a_non_finite_step_changes_nothing_and_says_so(objective, poison):
    optimizer = optax.adam(0.1)
    step = jax.jit(training.make_train_step(objective, optimizer))
    state = training.init_train_state({"w": jnp.zeros(3)}, optimizer)
    good = jnp.array([[1.0, 2.0, 3.0]])
    state, info = step(state, jax.random.PRNGKey(0), good)
    assert not bool(info.skipped) and int(state.step) == 1
    poisoned_batch = poison(state.params["w"])
    after, info = step(state, jax.random.PRNGKey(1), poisoned_batch)
    assert bool(info.skipped) and int(after.step) == 1
    assert_same_tree(after, state)  # parameters and Adam's moments untouched
    after, info = step(after, jax.random.PRNGKey(2), good)  # and training goes on
    assert not bool(info.skipped) and int(after.step) == 2
    assert bool(training.all_finite(after))
    # Without the guard the same step poisons the parameters for good.
    unguarded = jax.jit(training.make_train_step(objective, optimizer, skip_nonfinite=False))
    poisoned, info = unguarded(state, jax.random.PRNGKey(1), poisoned_batch)
    assert not bool(info.skipped) and not bool(training.all_finite(poisoned.params))


def test_ascent_step_moves_up_the_gradient():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    grads = {"w": jnp.array([3.0, -4.0]), "b": jnp.array(-1.0)}
    # SGD: params + η ∇
    sgd = optax.sgd(0.1)
    new, _ = jax.jit(training.ascent_step, static_argnums=0)(sgd, grads, sgd.init(params), params)
    np.testing.assert_allclose(new["w"], [1.3, -2.4], rtol=1e-6)
    np.testing.assert_allclose(new["b"], 0.4, rtol=1e-6)
    # Adam's first step is η · sign(∇) up to its ε: it too climbs.
    adam = optax.adam(0.01)
    new, opt_state = jax.jit(training.ascent_step, static_argnums=0)(adam, grads, adam.init(params), params)
    np.testing.assert_allclose(new["w"], [1.01, -2.01], rtol=1e-6)
    np.testing.assert_allclose(new["b"], 0.49, rtol=1e-6)
    # and optax received −∇: its first moment is (1 − β₁)(−∇)
    np.testing.assert_allclose(opt_state[0].mu["w"], [-0.3, 0.4], rtol=1e-6)


def test_gradient_ascent_is_init_train_state_and_make_train_step():
    optimizer = optax.adam(0.1)
    trainer = training.gradient_ascent(quadratic_objective, optimizer)
    params = {"w": jnp.zeros(3)}
    state = trainer.init(jax.random.key(0), params)
    assert_same_tree(state, trainer.init(jax.random.key(1), params))  # the key is unused
    assert_same_tree(state, training.init_train_state(params, optimizer))
    batch = jnp.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    got = jax.jit(trainer.step)(state, jax.random.key(2), batch)
    want = jax.jit(training.make_train_step(quadratic_objective, optimizer))(state, jax.random.key(2), batch)
    assert_same_tree(got, want)


def _svi_trainer():
    params = linear_gaussian.Params(
        weight=jnp.array([[1.0, 0.0], [0.5, 1.0], [0.0, -1.0]]), bias=jnp.zeros(3), noise_variance=jnp.full((3,), 0.5)
    )
    trainer = svi.svi(
        linear_gaussian.model, mean_field_gaussian(2), optax.adam(1e-2), optax.adam(1e-1), 8, inner_steps=2
    )
    data = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
    return trainer, params, (jnp.arange(8), data)


def _gradient_ascent_trainer():
    trainer = training.gradient_ascent(quadratic_objective, optax.adam(0.1))
    return trainer, {"w": jnp.zeros(3)}, jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)


@pytest.mark.parametrize("make", [_gradient_ascent_trainer, _svi_trainer], ids=["gradient_ascent", "svi"])
def test_every_trainer_has_the_same_contract(make):
    """A `Trainer`: init(key, params) -> state; step(state, key, batch) -> (state, info) with the shared
    info fields first; the step keeps the state's types, so a jitted epoch is traced once."""
    trainer, params, data = make()
    assert isinstance(trainer, training.Trainer)
    state = trainer.init(jax.random.key(0), params)
    new_state, info = jax.jit(trainer.step)(state, jax.random.key(1), jax.tree.map(lambda leaf: leaf[:4], data))
    assert info._fields[:3] == ("objective", "grad_norm", "skipped")
    assert all(jnp.shape(value) == () for value in info)
    assert np.isfinite(float(info.objective)) and float(info.grad_norm) > 0 and not bool(info.skipped)
    assert jax.tree.structure(new_state) == jax.tree.structure(state) and int(new_state.step) == 1

    def types(tree):
        return jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype, jax.typeof(leaf).weak_type), tree)

    assert types(new_state) == types(state)
    chex.clear_trace_counter()
    epoch = jax.jit(chex.assert_max_traces(training.make_epoch(trainer.step, 4), n=1))
    state, info = epoch(state, jax.random.key(2), data)
    state, info = epoch(state, jax.random.key(3), data)  # a second trace raises
    assert info.objective.shape == (2,) and int(state.step) == 4

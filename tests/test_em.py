"""The EM loops of lvmjax.models._em: one convergence rule, and the host loop equal to the jitted one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvmjax.models._em import best_restart, converged, run_em, run_em_on_host


def halve_towards_two(theta):
    """A contraction θ -> (θ + 2) / 2 whose objective -(θ - 2)² rises to 0, one EM-like step."""
    return (theta + 2) / 2, -((theta - 2) ** 2)


def test_the_rule_never_holds_at_the_first_iterate():
    assert not converged(-np.inf, -3.0, 1e-3)
    assert not converged(-np.inf, -np.inf, 1e-3)  # |-inf + inf| is NaN
    assert converged(-3.0, -3.0005, 1e-3)
    assert not converged(-3.0, -3.002, 1e-3)
    assert not converged(-3.0, np.nan, 1e-3)
    np.testing.assert_array_equal(converged(np.array([-1.0, -np.inf]), np.array([-1.0, -1.0]), 0.1), [True, False])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_host_loop_iterates_as_the_jitted_loop_and_takes_the_objectives_dtype(dtype):
    with jax.enable_x64(dtype == "float64"):
        start = jnp.asarray(-30.0, dtype)
        want_theta, want = jax.jit(lambda theta: run_em(halve_towards_two, theta, 50, 1e-3))(start)
        got_theta, got = run_em_on_host(jax.jit(halve_towards_two), start, 50, 1e-3)
        assert got.objective.dtype == want.objective.dtype == jnp.dtype(dtype)
        assert got.objective.shape == (50,)
        assert int(got.num_iterations) == int(want.num_iterations) < 50
        assert bool(got.converged) and bool(want.converged)
        np.testing.assert_allclose(got.objective, want.objective, rtol=1e-6)  # NaN after the last, in both
        np.testing.assert_allclose(got_theta, want_theta, rtol=1e-6)


def test_each_restart_of_the_host_loop_stops_on_its_own():
    starts = jnp.asarray([2.0, 10.0, -50.0])  # converged at once, soon, late
    thetas, info = run_em_on_host(jax.jit(halve_towards_two), starts, 40, 1e-3)
    assert info.objective.shape == (3, 40)
    for index, start in enumerate(starts):
        theta, alone = jax.jit(lambda theta: run_em(halve_towards_two, theta, 40, 1e-3))(start)
        assert int(info.num_iterations[index]) == int(alone.num_iterations)
        assert bool(info.converged[index]) == bool(alone.converged)
        np.testing.assert_allclose(info.objective[index], alone.objective, rtol=1e-6)
        np.testing.assert_allclose(thetas[index], theta, rtol=1e-6)  # held once it stopped
    assert len(set(np.asarray(info.num_iterations).tolist())) == 3


def test_the_host_loop_stops_at_max_iter_unconverged():
    _, info = run_em_on_host(jax.jit(halve_towards_two), jnp.asarray(-30.0), 3, 0.0)
    assert int(info.num_iterations) == 3 and not bool(info.converged)


def test_the_best_restart_has_the_highest_finite_objective():
    tree = {"theta": jnp.arange(4.0), "info": jnp.asarray([10, 11, 12, 13])}
    best = best_restart(jnp.asarray([-2.0, jnp.nan, -1.0, jnp.inf]), tree)
    assert float(best["theta"]) == 2.0 and int(best["info"]) == 12

"""EM with its data distributed, on this process's one device: the mesh loop and the streamed loop stop by
the rule of the one-device EM and keep the objective's precision. (Four devices: tests/test_parallel.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lvmjax import distributed_em, parallel
from lvmjax.models import gaussian_mixture


def three_clusters(num_data=600, dtype=np.float32):
    rng = np.random.default_rng(0)
    centres = 6 * rng.normal(size=(3, 2))
    return (centres[rng.integers(0, 3, num_data)] + rng.normal(size=(num_data, 2))).astype(dtype)


def test_without_a_mesh_it_is_the_one_device_fit():
    data = three_clusters()
    got = distributed_em.fit_em(jax.random.key(0), data, 3, "diag", max_iter=20, n_init=2, mesh=None)
    want = gaussian_mixture.fit_em(jax.random.key(0), data, 3, "diag", max_iter=20, n_init=2)
    for got_leaf, want_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(got_leaf, want_leaf)


@pytest.mark.parametrize("fit", ["mesh", "streaming"])
def test_the_distributed_loops_converge_where_the_one_device_loop_does(fit):
    data = three_clusters()
    start = gaussian_mixture.initial_params(jax.random.key(0), data, 3, "full")
    _, want = gaussian_mixture.fit_em(jax.random.key(0), data, 3, "full", max_iter=100, tol=1e-4, init_params=start)
    if fit == "mesh":
        _, got = distributed_em.fit_em(
            jax.random.key(0), data, 3, "full", max_iter=100, tol=1e-4, init_params=start, mesh=parallel.data_mesh(1)
        )
    else:
        _, got = distributed_em.fit_em_streaming(
            jax.random.key(0), data, 3, "full", max_iter=100, tol=1e-4, chunk_size=250, init_params=start
        )
    assert bool(want.converged) and bool(got.converged)
    assert int(got.num_iterations) == int(want.num_iterations) < 100
    np.testing.assert_allclose(got.objective, want.objective, rtol=1e-5)


@pytest.mark.parametrize("fit", ["mesh", "streaming"])
def test_the_trace_has_the_objectives_dtype(fit):
    with jax.enable_x64(True):
        data = three_clusters(dtype=np.float64)
        start = gaussian_mixture.initial_params(jax.random.key(0), data, 3, "full")
        _, want = gaussian_mixture.fit_em(jax.random.key(0), data, 3, "full", max_iter=6, tol=0.0, init_params=start)
        if fit == "mesh":
            _, got = distributed_em.fit_em(
                jax.random.key(0), data, 3, "full", max_iter=6, tol=0.0, init_params=start, mesh=parallel.data_mesh(1)
            )
        else:
            _, got = distributed_em.fit_em_streaming(
                jax.random.key(0), data, 3, "full", max_iter=6, tol=0.0, chunk_size=250, init_params=start
            )
        assert got.objective.dtype == want.objective.dtype == jnp.float64
        np.testing.assert_allclose(got.objective, want.objective, rtol=1e-12)

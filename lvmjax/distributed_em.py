"""EM with its data distributed: split over the devices of a mesh, or streamed from the host in chunks.

Both fit the Gaussian mixture of `lvmjax.models.gaussian_mixture` by the EM of
its `fit_em`, assembled from parts of the data. Each part (a device's rows, a
chunk) gives the sufficient statistics of its own datapoints,
`gaussian_mixture.sufficient_statistics`; `combine_statistics` joins those of
disjoint parts into the statistics of all N datapoints (Chan, Golub & LeVeque
1979), and the M-step is `params_from_statistics` of the total:

    N_k = Σ_i r_ik,   μ_k = Σ_i r_ik x_i / N_k,   Σ_k = Σ_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ / N_k

so only (K, D, D)-sized statistics cross devices or leave a chunk. Neither loop
can run inside `lax.while_loop` (collectives inside it deadlocked XLA's CPU
devices; the chunks come from the host), so both iterate with the host loop of
`lvmjax.models._em.run_em_on_host`, which stops by the same rule as every EM.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from lvmjax import _validation, parallel
from lvmjax.errors import ArgumentError
from lvmjax.models import _mixture, gaussian_mixture
from lvmjax.models._em import EMInfo, best_restart, run_em_on_host
from lvmjax.models.gaussian_mixture import Params, Statistics, combine_statistics, params_from_statistics
from lvmjax.types import Array

__all__ = ["fit_em", "fit_em_streaming"]


def fit_em(
    key: Array,
    data: Array,
    num_components: int,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init_params: Params | None = None,
    mesh: Mesh | None = None,
) -> tuple[Params, EMInfo]:
    """`gaussian_mixture.fit_em` with the datapoints split over the devices of `mesh`.

    The data is padded to a multiple of the number of devices (the padding
    masked out) and split over them; each device computes the E-step and the
    `Statistics` of its own rows, and `combine_statistics` joins them, in the
    same order on every device. The k-means++ seeding draws the same datapoints
    as without a mesh, and the result agrees with `gaussian_mixture.fit_em` to
    float rounding. The `n_init` restarts run at once (vmapped in one program);
    each stops on its own, and the one with the highest final mean
    log-likelihood is returned.

    Args:
      key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init, init_params:
        as in `gaussian_mixture.fit_em`.
      mesh: a `parallel.data_mesh`; None fits on one device, by `gaussian_mixture.fit_em`.

    Returns:
      (θ, `EMInfo` of the chosen restart), as `gaussian_mixture.fit_em`; with a
      mesh, θ is replicated on its devices.
    """
    if mesh is None:
        return gaussian_mixture.fit_em(
            key, data, num_components, covariance_type, max_iter, tol, reg_covar, n_init, init_params
        )
    data = _validation.check_data_matrix(data)
    num_data = data.shape[0]
    n_init, max_iter = gaussian_mixture.check_fit_options(
        num_data, num_components, covariance_type, reg_covar, n_init, max_iter
    )
    data = parallel.shard(parallel.pad_to_multiple(data, mesh.size), mesh)
    keys = jax.random.split(key, n_init)
    if init_params is None:
        starts = _mixture.kmeans_plus_plus_restarts(keys, data, num_components, num_data)
    else:
        starts = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (n_init, *leaf.shape)), init_params)
    return _fit_em_on_mesh(data, starts, num_data, covariance_type, max_iter, tol, reg_covar, mesh)


def _fit_em_on_mesh(data, starts, num_data, covariance_type, max_iter, tol, reg_covar, mesh):
    """The EM of `fit_em` on the rows of data (N' ≥ N, the first N real) split over the devices of `mesh`: one
    restart from each row of `starts` (k-means++ centres (R, K, D), or `Params` with a leading axis R).

    A host loop over one compiled step, which advances every restart: the host decides convergence once for
    all devices.
    """
    initial, step, objective = _mesh_programs(num_data, covariance_type, reg_covar, mesh)
    params = initial(data, starts) if not isinstance(starts, Params) else starts
    params, info = run_em_on_host(functools.partial(step, data), params, max_iter, tol)
    return best_restart(np.asarray(objective(data, params)), (params, info))


@functools.lru_cache(maxsize=8)
def _mesh_programs(num_data, covariance_type, reg_covar, mesh):
    """The compiled programs of `_fit_em_on_mesh`, each vmapped over restarts: (centres -> θ_0 by hard
    assignment, θ_t -> (θ_{t+1}, objective at θ_t), θ -> objective)."""
    diagonal = covariance_type != "full"
    rows, everywhere = PartitionSpec(parallel.DATA_AXIS), PartitionSpec()

    def on_mesh(fn):
        return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(rows, everywhere), out_specs=everywhere, check_vma=False))

    def local(data):
        first = jax.lax.axis_index(parallel.DATA_AXIS) * data.shape[0]  # int32, as the arange
        valid = first + jnp.arange(data.shape[0], dtype=first.dtype) < num_data
        return data.T, valid

    def m_step_everywhere(data_t, valid, log_responsibilities_t):
        log_responsibilities_t = jnp.where(valid[None, :], log_responsibilities_t, -jnp.inf)
        every = jax.lax.all_gather(
            gaussian_mixture.sufficient_statistics(data_t, log_responsibilities_t, covariance_type), parallel.DATA_AXIS
        )
        parts = [jax.tree.map(lambda leaf, index=index: leaf[index], every) for index in range(mesh.size)]
        return params_from_statistics(functools.reduce(combine_statistics, parts), num_data, covariance_type, reg_covar)

    def mean_log_likelihood(valid, log_likelihood):
        # The same sum, in the same order, on every device.
        local_sum = jnp.sum(jnp.where(valid, log_likelihood, 0))
        return jnp.sum(jax.lax.all_gather(local_sum, parallel.DATA_AXIS)) / num_data

    def initial(data, centres):
        data_t, valid = local(data)

        def one(centres):  # the M-step on the hard assignments to the nearest centre, as `initial_params`
            return m_step_everywhere(data_t, valid, _mixture.nearest_centre(centres, data).T)

        return jax.vmap(one)(centres)

    def step(data, params):
        data_t, valid = local(data)

        def one(params):
            log_responsibilities_t, log_likelihood = gaussian_mixture.e_step_columns(params, data_t, diagonal)
            return m_step_everywhere(data_t, valid, log_responsibilities_t), mean_log_likelihood(valid, log_likelihood)

        return jax.vmap(one)(params)

    def objective(data, params):
        data_t, valid = local(data)
        return jax.vmap(
            lambda params: mean_log_likelihood(valid, gaussian_mixture.e_step_columns(params, data_t, diagonal)[1])
        )(params)

    return on_mesh(initial), on_mesh(step), on_mesh(objective)


@functools.partial(jax.jit, static_argnames=("covariance_type", "diagonal"))
def _chunk_statistics(
    params: Params, chunk: Array, num_valid: Array, covariance_type: str, diagonal: bool
) -> tuple[Statistics, Array]:
    """The E-step on the first `num_valid` rows of chunk: their `Statistics` and Σ_i log p(x_i; θ)."""
    chunk_t = chunk.T
    valid = jnp.arange(chunk.shape[0], dtype=num_valid.dtype) < num_valid
    log_responsibilities_t, log_likelihood = gaussian_mixture.e_step_columns(params, chunk_t, diagonal)
    log_responsibilities_t = jnp.where(valid[None, :], log_responsibilities_t, -jnp.inf)
    return (
        gaussian_mixture.sufficient_statistics(chunk_t, log_responsibilities_t, covariance_type),
        jnp.sum(jnp.where(valid, log_likelihood, 0)),
    )


@functools.partial(jax.jit, static_argnames="covariance_type")
def _chunk_assignments(centres: Array, chunk: Array, num_valid: Array, covariance_type: str) -> Statistics:
    """The `Statistics` of the first `num_valid` rows of chunk, each assigned wholly to its nearest centre."""
    valid = jnp.arange(chunk.shape[0], dtype=num_valid.dtype) < num_valid
    return gaussian_mixture.sufficient_statistics(
        chunk.T, jnp.where(valid[None, :], _mixture.nearest_centre(centres, chunk).T, -jnp.inf), covariance_type
    )


_combine = jax.jit(combine_statistics)


def fit_em_streaming(
    key: Array,
    data,
    num_components: int,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    chunk_size: int = 65536,
    init_params: Params | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> tuple[Params, EMInfo]:
    """`gaussian_mixture.fit_em` for data larger than device memory: every iteration streams over chunks of rows.

    The data stays where it is (a numpy array, or `np.load(..., mmap_mode="r")` of
    a file larger than host memory). Each chunk of `chunk_size` rows is copied to
    the device, its E-step gives its `Statistics`, and `combine_statistics` adds
    them to the running total; the M-step takes θ from the total. The device
    holds one chunk and its temporaries at a time, whatever N is, and the
    program is compiled once (the last chunk is padded and masked).

    The k-means++ seeding draws from a random sample of `chunk_size` datapoints;
    θ_0 is then the M-step on every datapoint's nearest centre. One restart.

    Args:
      key, num_components, covariance_type, max_iter, tol, reg_covar, init_params:
        as in `gaussian_mixture.fit_em`.
      data: (N, D), finite; any array-like that slices into numpy arrays.
      chunk_size: rows per chunk.
      progress: `progress(iteration, chunk, num_chunks)` after each chunk (iteration 0 is the seeding).

    Returns:
      (θ, `EMInfo`), as `gaussian_mixture.fit_em`.
    """
    if len(np.shape(data)) != 2:
        raise ArgumentError(f"data must be a matrix of shape (N, D), got shape {np.shape(data)}.")
    num_data, data_dim = np.shape(data)
    chunk_size = _validation.check_num_samples(chunk_size, "chunk_size")
    _, max_iter = gaussian_mixture.check_fit_options(num_data, num_components, covariance_type, reg_covar, 1, max_iter)
    chunk_size = min(chunk_size, num_data)
    starts = range(0, num_data, chunk_size)
    dtype = jnp.result_type(float)

    def chunks():
        for start in starts:
            chunk = np.asarray(data[start : start + chunk_size], dtype)
            valid = chunk.shape[0]
            if not np.all(np.isfinite(chunk)):
                raise ArgumentError(f"data has non-finite values in rows {start} to {start + valid - 1}.")
            if valid < chunk_size:
                chunk = np.concatenate([chunk, np.broadcast_to(chunk[:1], (chunk_size - valid, data_dim))])
            yield jnp.asarray(chunk), jnp.asarray(valid, jnp.int32)

    def stream(iteration, statistics_of):
        total, extra = None, 0.0
        for index, (chunk, valid) in enumerate(chunks()):
            statistics, value = statistics_of(chunk, valid)
            total = statistics if total is None else _combine(total, statistics)
            extra = extra + value
            if progress is not None:
                progress(iteration, index + 1, len(starts))
        return params_from_statistics(total, num_data, covariance_type, reg_covar), extra

    if init_params is None:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())  # O(chunk_size), not O(N)
        sample = np.sort(rng.choice(num_data, chunk_size, replace=False))
        centres = _mixture.kmeans_plus_plus(key, jnp.asarray(np.asarray(data[sample], dtype)), num_components)
        params, _ = stream(0, lambda chunk, valid: (_chunk_assignments(centres, chunk, valid, covariance_type), 0.0))
    else:
        params = init_params
    diagonal = covariance_type != "full"
    iterations = itertools.count(1)  # for `progress`

    def step(params):
        new_params, total = stream(
            next(iterations), lambda chunk, valid: _chunk_statistics(params, chunk, valid, covariance_type, diagonal)
        )
        # The sum over chunks divided by N on the host, in float64, then rounded to the data's dtype.
        return new_params, np.asarray(float(total) / num_data, dtype)

    return run_em_on_host(step, params, max_iter, tol)

"""Data parallelism over devices and hosts, through JAX's own sharding and distributed runtime.

lvmjax's steps are pure functions of one minibatch, so running them on several
devices changes only where the arrays live, not the code. A one-axis `Mesh`
named "data" spans the devices (of every process, after
`jax.distributed.initialize`); parameters and optimizer states are replicated on
each device, and what grows with the data is split along its leading axis:

- gradient training (`training.make_epoch(step, batch_size, mesh)`): each device
  takes B / n rows of every minibatch; the batch-mean gradient is one all-reduce.
  The minibatches and every datapoint's key are those of the one-device run, so
  the parameters agree with it to float rounding.
- non-amortized SVI (`svi.make_svi_step(..., mesh=mesh)`, `svi.shard_state`): the
  per-datapoint φ_1 … φ_N and their optimizer states are split over the devices
  along the datapoint axis; a step moves only its B rows between devices.
- EM (`distributed_em.fit_em(..., mesh=mesh)`): the datapoints are split, each
  device computes the E-step and the sufficient statistics of its own rows, and
  the statistics are combined across devices.

The models never import this module: a model's step is written for one device,
and the learning layer (`training`, `svi`, `distributed_em`) places it on a mesh.

XLA's SPMD partitioner inserts the collectives and compiles each program once for
the mesh. On one CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=4` gives
four simulated devices; across machines, `initialize_distributed` reads the
standard `jax.distributed` settings from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lvmjax.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "COORDINATOR_ADDRESS",
    "DATA_AXIS",
    "NUM_PROCESSES",
    "PROCESS_ID",
    "check_batch_size",
    "constrain",
    "data_mesh",
    "initialize_distributed",
    "pad_to_multiple",
    "replicate",
    "replicated",
    "shard",
    "split",
    "to_host",
]

DATA_AXIS = "data"

# The environment variables of a multi-process run: the first is jax.distributed's own.
COORDINATOR_ADDRESS = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"


def data_mesh(num_devices: int | None = None, devices=None) -> Mesh:
    """A one-axis mesh ("data") over the first `num_devices` devices (default: all, of every process).

    Args:
      num_devices: how many of `devices` to use; default all of them.
      devices: the devices to choose from; default `jax.devices()`, those of the
        default backend. `jax.devices("cpu")` builds a mesh of CPU devices on a
        machine whose default backend is an accelerator.

    Raises:
      ValueError: `num_devices` is below 1 or above the devices there are, or, in a
        multi-process run, leaves out another process's devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ArgumentError("devices is empty; give at least one device, such as jax.devices()[:1].")
    if num_devices is None:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, int | np.integer):
        raise ArgumentTypeError(f"num_devices must be an integer, got {type(num_devices).__name__}.")
    if not 1 <= num_devices <= len(devices):
        raise ArgumentError(
            f"num_devices must be between 1 and the {len(devices)} {devices[0].platform.upper()} "
            f"device(s) there are, got {num_devices}."
        )
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ArgumentError(
            f"a run of {jax.process_count()} processes uses all {len(devices)} devices, got num_devices={num_devices}."
        )
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer states, the training data)."""
    return NamedSharding(mesh, PartitionSpec())


def split(mesh: Mesh) -> NamedSharding:
    """The leading axis is cut into equal consecutive parts, one per device (minibatches, φ_i, EM's data)."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _place(tree: Any, sharding: NamedSharding) -> Any:
    """`tree`'s leaves as global arrays with `sharding`, from the same values on every process."""

    def place(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies every leaf of `tree` to every device of `mesh`."""
    return _place(tree, replicated(mesh))


def shard(tree: Any, mesh: Mesh) -> Any:
    """Splits every leaf of `tree` along its leading axis over the devices of `mesh`.

    Raises:
      ValueError: a leading axis is not a multiple of the number of devices
        (`pad_to_multiple` makes it one).
    """
    for leaf in jax.tree.leaves(tree):
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] % mesh.size:
            raise ArgumentError(
                f"cannot split a leading axis of shape {np.shape(leaf)} over {mesh.size} devices; "
                f"its length must be a multiple of {mesh.size}."
            )
    return _place(tree, split(mesh))


def pad_to_multiple(tree: Any, multiple: int) -> Any:
    """Every leaf of `tree` with copies of its first row appended along the leading axis, up to a
    multiple of `multiple` rows. The copies are never indexed by a step, which sees rows 0 … N-1."""

    def pad(leaf):
        rows = leaf.shape[0]
        extra = -rows % multiple
        if not extra:
            return leaf
        return jax.numpy.concatenate([leaf, jax.numpy.broadcast_to(leaf[:1], (extra, *leaf.shape[1:]))])

    return jax.tree.map(pad, tree)


def constrain(tree: Any, mesh: Mesh | None) -> Any:
    """Inside a jitted function: asks for `tree` split along its leading axis over `mesh`
    (`jax.lax.with_sharding_constraint`); the identity without a mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, split(mesh))


def check_batch_size(batch_size: int, mesh: Mesh | None) -> None:
    if mesh is not None and batch_size % mesh.size:
        raise ArgumentError(
            f"batch_size={batch_size} must be a multiple of the {mesh.size} devices, "
            "so that every device takes the same number of rows."
        )


def to_host(tree: Any) -> Any:
    """Every leaf of `tree` as a numpy array on this host, whether replicated or split (in a multi-process
    run, a split array is gathered from every process; all processes must call this together)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        if isinstance(leaf, jax.Array):
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(leaf)

    return jax.tree.map(fetch, tree)


def initialize_distributed(environ: dict[str, str] | None = None) -> bool:
    """`jax.distributed.initialize` from the environment, for a run over several processes or hosts.

    Every process of the run is started with the same command and
        JAX_COORDINATOR_ADDRESS=host:port   (process 0's address, reachable by all)
        JAX_NUM_PROCESSES=P
        JAX_PROCESS_ID=0 … P-1              (a different one for each process)
    and afterwards `jax.devices()` lists the devices of all of them. Where none of
    the three is set, nothing happens (one process). Call it before any other JAX
    call. On CPUs the processes exchange data with gloo over TCP.

    Returns:
      True if the distributed runtime was initialized.

    Raises:
      ValueError: some but not all of the three are set, or a number is malformed.
    """
    source: Mapping[str, str] = os.environ if environ is None else environ
    names = (COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID)
    values = {name: source.get(name, "") for name in names}
    if not any(values.values()):
        return False
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ArgumentError(
            f"a multi-process run needs {', '.join(names)}; {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set."
        )
    numbers = {}
    for name in (NUM_PROCESSES, PROCESS_ID):
        try:
            numbers[name] = int(values[name])
        except ValueError:
            raise ArgumentError(f"{name} must be an integer, got {values[name]!r}.") from None
    num_processes, process_id = numbers[NUM_PROCESSES], numbers[PROCESS_ID]
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ArgumentError(
            f"{PROCESS_ID} must be between 0 and {NUM_PROCESSES} - 1 = {num_processes - 1}, got {process_id}."
        )
    jax.distributed.initialize(values[COORDINATOR_ADDRESS], num_processes, process_id)
    return True

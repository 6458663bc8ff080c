"""The host loop of the models trained over epochs: one compiled epoch per call, with checkpoints,
progress, the divergence rule, and data-parallel placement on a mesh."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from lvmjax import parallel
from lvmjax.app.checkpoints import Checkpoints
from lvmjax.errors import TrainingDiverged

__all__ = ["run_epochs"]


def run_epochs(
    epoch: Callable,
    state: Any,
    data: Any,
    key_epochs,
    num_epochs: int,
    max_skipped_steps: int,
    progress: Callable[[int, dict], None] | None = None,
    checkpoints: Checkpoints | None = None,
    mesh: Mesh | None = None,
    place: Callable[[Any, Mesh], Any] = parallel.replicate,
) -> tuple[Any, list[dict], float]:
    """Runs `epoch(state, key, data) -> (state, info)` for epochs 1 … num_epochs; returns (state, history, seconds).

    Epoch t uses the t-th of the keys `jax.random.split(key_epochs, num_epochs)`, so a run
    resumed from `checkpoints` (saved every `checkpoints.every` epochs and after the last;
    training starts from the latest one there) ends with the parameters of an
    uninterrupted one (bitwise on CPU). `info.objective` and `info.skipped` have one
    entry per step; the history entry of an epoch holds the mean objective of the steps
    applied. `max_skipped_steps` skipped steps in a row raise `TrainingDiverged` before
    that epoch's state is saved.

    With `mesh`, the data is replicated over its devices and the state placed by
    `place(state, mesh)`; checkpoints and the returned state are as on one device, so a
    run can resume on another number of devices.
    """
    history, first_epoch, seconds_before = [], 1, 0.0
    if checkpoints is not None and (latest := checkpoints.restore_latest(state)) is not None:
        state, history = latest
        first_epoch = len(history) + 1
        seconds_before = history[-1]["seconds"] if history else 0.0
    one_device_state = state
    if mesh is not None:
        data, state = parallel.replicate(data, mesh), place(state, mesh)
    epoch_keys = jax.random.split(key_epochs, num_epochs)
    start = time.perf_counter()
    in_a_row = history[-1].get("skipped_in_a_row", 0) if history else 0
    for number in range(first_epoch, num_epochs + 1):
        state, info = epoch(state, epoch_keys[number - 1], data)
        skipped = np.asarray(info.skipped)
        in_a_row = _longest_run_of_skips(skipped, in_a_row, max_skipped_steps, number)
        objective = np.asarray(info.objective)[~skipped]
        entry = {
            "epoch": number,
            "train_objective": float(objective.mean()) if objective.size else math.nan,
            "seconds": seconds_before + time.perf_counter() - start,
        }
        if skipped.any() or in_a_row:
            entry |= {"skipped_steps": int(skipped.sum()), "skipped_in_a_row": in_a_row}
        history.append(entry)
        if checkpoints is not None and (number % checkpoints.every == 0 or number == num_epochs):
            checkpoints.save(number, _as_on_one_device(state, one_device_state) if mesh is not None else state, history)
        if progress is not None:
            progress(number, entry)
    if mesh is not None:
        state = _as_on_one_device(state, one_device_state)
    state = jax.block_until_ready(state)
    if checkpoints is not None:
        checkpoints.wait()
    return state, history, seconds_before + time.perf_counter() - start


def _as_on_one_device(state, template):
    """A data-parallel training state as one device holds it: numpy arrays on the host, φ without its
    padding rows (orbax writes host arrays from process 0 alone in a multi-process run)."""
    host = parallel.to_host(state)
    return jax.tree.map(lambda leaf, like: np.asarray(leaf[: like.shape[0]] if like.ndim else leaf), host, template)


def _longest_run_of_skips(skipped: np.ndarray, in_a_row: int, limit: int, epoch: int) -> int:
    """The skipped steps in a row at the end of this epoch's flags (`in_a_row` carried in from the last);
    raises TrainingDiverged once a run of them reaches `limit`, before this epoch's state is saved."""
    longest = 0
    for flag in skipped:
        in_a_row = in_a_row + 1 if flag else 0
        longest = max(longest, in_a_row)
    if longest >= limit:
        raise TrainingDiverged(
            f"{longest} training steps in a row had a non-finite objective or gradient (NaN or inf) "
            f"by the end of epoch {epoch}, so training stopped; lower {{lr}}."
        )
    return in_a_row

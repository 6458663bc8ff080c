"""Fitting a run: `fit(config)` checks the configuration against the data and asks the model's spec to fit."""

from __future__ import annotations

from collections.abc import Callable

from jax.sharding import Mesh

from lvmjax.app.checkpoints import Checkpoints
from lvmjax.app.config import FitConfig, check_config_against_data, check_mesh
from lvmjax.app.datasets import load_data
from lvmjax.app.spec import FitResult
from lvmjax.data import Dataset

__all__ = ["fit"]


def fit(
    config: FitConfig,
    dataset: Dataset | None = None,
    progress: Callable[[int, dict], None] | None = None,
    checkpoints: Checkpoints | None = None,
    mesh: Mesh | None = None,
) -> FitResult:
    """Fits the model of `config` on the training split; `progress(step, entry)` after each history entry.

    With `checkpoints` (models trained over epochs), the training state is saved every
    `checkpoints.every` epochs and after the last, and training starts from the latest
    checkpoint there if it has one. Epoch t always uses the t-th of the keys
    `jax.random.split(key_epochs, epochs)`, so a resumed run ends with the same
    parameters as an uninterrupted one (bitwise on CPU).

    With `mesh` (`parallel.data_mesh`), a model whose spec allows it fits data-parallel
    over its devices (the minibatches split over them; for svi the φ_i too; for gmm
    EM's data), with the same minibatches and keys as on one device, so the result
    agrees with the one-device run to float rounding. Checkpoints hold the state as on
    one device, so a run can resume on another number of devices.

    Args:
      config: the run's configuration.
      dataset: its data (`load_data(config)` by default).
      progress, checkpoints, mesh: as above.

    Returns:
      The `FitResult`, to save with `rundir.save_run` (or `finish_run`).
    """
    dataset = dataset if dataset is not None else load_data(config)
    check_config_against_data(config, dataset)
    mesh = check_mesh(config, mesh)
    result = config.spec.fit(config, dataset, progress=progress, checkpoints=checkpoints, mesh=mesh)
    return result._replace(vocabulary=dataset.vocabulary)

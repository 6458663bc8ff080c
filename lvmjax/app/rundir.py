"""The run directory: written whole or not at all, read back as a `Run`.

    RUN_DIR/config.json     the `FitConfig`, the data's shape and the training time
    RUN_DIR/metrics.jsonl   one line per epoch or EM iteration
    RUN_DIR/checkpoints/    the training state every N epochs (models trained over epochs)
    RUN_DIR/checkpoint/     the parameters; written last, so a directory holds it exactly when the run is complete

`write_dir` is the one atomic create-or-replace of a directory, shared by the runs and
the tour's report: everything goes into a staging sibling that is renamed into place
at the end, and an existing directory is never written into.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax

from lvmjax.app import checkpoints as checkpoints_lib
from lvmjax.app.checkpoints import CHECKPOINT_DIR, CHECKPOINTS_DIR
from lvmjax.app.config import FitConfig
from lvmjax.app.precision import precision_scope
from lvmjax.app.spec import FitResult, Run
from lvmjax.data import Dataset
from lvmjax.errors import RunError

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "check_new_run_dir",
    "finish_run",
    "load_run",
    "read_config",
    "read_history",
    "read_vocabulary",
    "resume_run",
    "save_run",
    "start_run",
    "write_atomically",
    "write_dir",
]

CONFIG_FILE, METRICS_FILE = "config.json", "metrics.jsonl"
VOCABULARY_FILE = "vocabulary.txt"  # text: the words of the columns, one a line, in order


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary sibling renamed over it: a reader sees the old or the new."""
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_dir(target: str | os.PathLike, fill: Callable[[Path], None], replace: bool = False) -> Path:
    """The directory `target`, made whole by `fill(staging)` in a staging sibling renamed into place.

    The staging directory is removed if anything fails, and `target` is untouched. An
    empty `target` is replaced by the rename; a non-empty one only with `replace`, in
    which case it is set aside first and removed once the new one is in place (checking
    that it may be replaced is the caller's).
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        fill(staging)
        if not (target.is_dir() and any(target.iterdir())):
            os.rename(staging, target)
            return target
        if not replace:
            raise RunError(f"{target} already exists; choose a new {{run_dir}} (nothing in it was changed).")
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
        os.rename(target, aside / target.name)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(aside / target.name, target)
            raise
        finally:
            if target.exists():
                shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_new_run_dir(run_dir: str | os.PathLike) -> None:
    """Refuses a `run_dir` that exists: a run is never written into an existing directory."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise RunError(f"{run_dir} already exists; choose a new {{run_dir}} (nothing in it was changed).")


def _describe(config: FitConfig, data_dim: int, image_shape, num_train: int) -> dict:
    """config.json: the configuration, and the shapes that `load_run` needs to read the checkpoint."""
    return dataclasses.asdict(config) | {
        "data_dim": int(data_dim),
        "image_shape": list(image_shape) if image_shape else None,
        "num_train": int(num_train),  # for the models with one φ_i per training datapoint
    }


def _create_run_dir(run_dir: Path, description: dict, fill: Callable[[Path], None] | None = None) -> Path:
    check_new_run_dir(run_dir)

    def write(staging: Path) -> None:
        (staging / CONFIG_FILE).write_text(json.dumps(description, indent=2) + "\n")
        if fill is not None:
            fill(staging)

    return write_dir(run_dir, write)


def start_run(run_dir: str | os.PathLike, config: FitConfig, dataset: Dataset) -> Path:
    """Creates RUN_DIR holding config.json, to be filled by checkpoints and `finish_run`.

    The directory appears whole, and an existing one is never written into.
    """
    description = _describe(config, dataset.train.shape[1], dataset.image_shape, dataset.train.shape[0])
    return _create_run_dir(Path(run_dir), description)


def finish_run(run_dir: str | os.PathLike, result: FitResult) -> Path:
    """Writes the trained parameters (checkpoint/), metrics.jsonl and the training time into RUN_DIR.

    checkpoint/ is written last and atomically: a run directory holds it
    exactly when the run is complete.
    """
    run_dir = Path(run_dir).absolute()
    write_atomically(run_dir / METRICS_FILE, "".join(json.dumps(entry) + "\n" for entry in result.history))
    description = json.loads((run_dir / CONFIG_FILE).read_text()) | {"train_seconds": result.seconds}
    if result.diagnostics is not None:
        description["diagnostics"] = result.diagnostics
    if result.vocabulary is not None:
        write_atomically(run_dir / VOCABULARY_FILE, "".join(f"{word}\n" for word in result.vocabulary))
    write_atomically(run_dir / CONFIG_FILE, json.dumps(description, indent=2) + "\n")
    checkpoints_lib.write_params(run_dir / CHECKPOINT_DIR, result.params)
    return run_dir


def save_run(
    run_dir: str | os.PathLike, config: FitConfig, result: FitResult, extra: Callable[[Path], None] | None = None
) -> Path:
    """Writes config.json, metrics.jsonl and the checkpoint; never touches an existing directory.

    Everything goes into a staging sibling that is renamed into place at the end; `extra(staging)`
    may write more files there first (a model selection's table and figure).
    """
    description = _describe(config, result.data_dim, result.image_shape, result.num_train)

    def fill(staging: Path) -> None:
        if extra is not None:
            extra(staging)
        finish_run(staging, result)

    return _create_run_dir(Path(run_dir), description, fill)


def resume_run(run_dir: str | os.PathLike, config: FitConfig) -> Path:
    """Checks that RUN_DIR is an unfinished run of exactly `config`, to continue with `fit(..., checkpoints)`."""
    run_dir = Path(run_dir).absolute()
    saved = read_config(run_dir)
    if (run_dir / CHECKPOINT_DIR).exists():
        raise RunError(f"{run_dir} is a finished run; there is nothing to resume.")
    if not config.spec.checkpointed:
        raise RunError(
            f"{config.model} is fitted in one go, without checkpoints; there is nothing to resume, "
            "so fit it again into a new {run_dir}."
        )
    for field in dataclasses.fields(FitConfig):
        given, stored = getattr(config, field.name), getattr(saved, field.name)
        if given != stored:
            raise RunError(
                f"resuming continues {run_dir} as config.json describes it, but "
                f"{{{field.name}}} differs (saved {stored!r}, given {given!r}); "
                "repeat the original command's settings with {resume}."
            )
    return run_dir


def read_config(run_dir: Path) -> FitConfig:
    """The `FitConfig` of RUN_DIR/config.json; a `RunError` that says what is wrong otherwise."""
    if not run_dir.is_dir():
        raise RunError(
            f"{run_dir} does not exist; make it with 'lvmjax fit'."
            if not run_dir.exists()
            else f"{run_dir} is a file, not a run directory; make one with 'lvmjax fit'."
        )
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}; make one with 'lvmjax fit'.")
    try:
        description = json.loads((run_dir / CONFIG_FILE).read_text())
        if not isinstance(description, dict):
            raise ValueError(f"it holds a JSON {type(description).__name__}, not an object of settings")
        fields = {field.name for field in dataclasses.fields(FitConfig)}
        return FitConfig(**{name: value for name, value in description.items() if name in fields})
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is damaged ({error}).") from None


def load_run(run_dir: str | os.PathLike) -> Run:
    """Reads a run directory written by `save_run` (or `start_run` and `finish_run`)."""
    run_dir = Path(run_dir).absolute()
    config = read_config(run_dir)
    spec = config.spec
    if not (run_dir / CHECKPOINT_DIR).exists():
        checkpoints = run_dir / CHECKPOINTS_DIR
        epochs = (
            sorted(int(path.name) for path in checkpoints.iterdir() if path.name.isdigit())
            if checkpoints.is_dir()
            else []
        )
        where = f"after epoch {epochs[-1]}" if epochs else "before its first checkpoint"
        raise RunError(
            f"the run in {run_dir} is unfinished (it stopped {where}); continue it by repeating "
            "its 'lvmjax fit' command with {resume}."
        )
    try:
        description = json.loads((run_dir / CONFIG_FILE).read_text())
        data_dim = int(description["data_dim"])
        num_train = int(description.get("num_train", 0))
        image_shape = tuple(description["image_shape"]) if description.get("image_shape") else None
        if image_shape is not None and (
            len(image_shape) != 2
            or not all(isinstance(side, int) and side >= 1 for side in image_shape)
            or image_shape[0] * image_shape[1] != data_dim
        ):
            raise ValueError(f"image_shape {list(image_shape)} is not (height, width) of {data_dim} pixels")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is damaged ({error}).") from None
    networks = spec.networks(config, data_dim, image_shape) if spec.networks is not None else None
    checkpoint = run_dir / CHECKPOINT_DIR
    with precision_scope(config):  # the parameters as the run computed them (float64 ones stay float64)
        template = spec.template(config, data_dim, image_shape, num_train)
        expected = {
            jax.tree_util.keystr(key): tuple(leaf.shape) for key, leaf in jax.tree_util.tree_leaves_with_path(template)
        }
        if checkpoints_lib.saved_shapes(checkpoint) != expected:
            raise RunError(
                f"the checkpoint in {checkpoint} does not match {CONFIG_FILE} (a {config.model} model "
                f"for {data_dim}-dimensional data with {spec.size(config)}); the run directory was "
                "changed after 'lvmjax fit' wrote it."
            )
        params = checkpoints_lib.read_params(checkpoint, template)
    return Run(config, params, data_dim, image_shape, networks, spec)


def read_vocabulary(run_dir: str | os.PathLike) -> tuple[str, ...] | None:
    """The words of RUN_DIR/vocabulary.txt, in order; None for a run of data without a vocabulary."""
    path = Path(run_dir) / VOCABULARY_FILE
    if not path.exists():
        return None
    try:
        return tuple(path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot read {path} ({error}).") from None


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The training history of a run: one entry per epoch (or EM iteration), from metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    try:
        history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise RunError(f"cannot read {path} ({error}).") from None
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict) or "train_objective" not in entry:
            raise RunError(f"{path} is damaged: line {number} has no train_objective.")
    return history

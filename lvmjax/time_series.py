"""Sequence data for the sequence models (`lvmjax.models.hmm`): files of time steps, split into sequences.

A sequence dataset is a `lvmjax.data.Dataset` whose rows are time steps and whose
`train_lengths` and `test_lengths` say where one sequence ends and the next begins.
One is known by name:

- ``"nile"``: the annual flow of the Nile at Aswan, 1871–1970 (100 steps, one column),
  shipped with lvmjax (``lvmjax/datasets/nile.csv``; public domain, see its README).

A user's file is one of:

- ``.csv``: one row per time step, comma-separated numbers, the columns the features; a
  first line that is not numbers is a header, and a header column named ``sequence``
  splits the rows into sequences (consecutive rows with the same value are one sequence;
  its values label the sequences and are not a feature).
- ``.npy``: one sequence, (T, D), or (T,) for one feature.
- ``.npz``: one array per sequence, each (T_s, D) or (T_s,), in the archive's order.

The split: with several sequences, round(S · test_fraction) of them, chosen by a
permutation from `seed` (at least one on each side), are the test split. With one
sequence, its last round(T · test_fraction) steps are the test split, scored given
the steps before them (`Dataset.test_follows_train`): the held-out forecast a user of
one series cares about.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib

import numpy as np

from lvmjax import data as data_lib
from lvmjax.errors import DataError

__all__ = [
    "NILE_FIRST_YEAR",
    "SEQUENCE_COLUMN",
    "SEQUENCE_DATASETS",
    "load_sequences",
    "sequences_of",
    "split_sequences",
]

SEQUENCE_DATASETS = ("nile",)
NILE_FIRST_YEAR = 1871  # step t of the nile is the year 1871 + t
SEQUENCE_COLUMN = "sequence"


def load_sequences(name: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0) -> data_lib.Dataset:
    """The sequences of a named dataset (`SEQUENCE_DATASETS`) or of a user's file, split for training and test.

    Returns:
      A `Dataset` of float32 time steps with `train_lengths` and `test_lengths`.

    Raises:
      DataError: for an unknown name, a missing or malformed file, values that are not
        finite real numbers, or a split that leaves either side empty.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test-fraction must be strictly between 0 and 1, got {test_fraction}")
    if str(name) == "nile":
        resource = importlib.resources.files("lvmjax") / "datasets" / "nile.csv"
        with importlib.resources.as_file(resource) as path:
            _, values = data_lib.read_csv_table(path)
        volume = values[:, 1:2]  # its columns are year, volume
        return split_sequences("nile", [volume], test_fraction, seed)
    path = pathlib.Path(name)
    suffix = path.suffix.lower()
    if suffix not in data_lib.FILE_SUFFIXES:
        known = ", ".join(repr(known_name) for known_name in SEQUENCE_DATASETS)
        raise DataError(
            f"unknown sequence dataset {str(name)!r}; the known ones are {known}, or the path of a "
            f"{', '.join(data_lib.FILE_SUFFIXES)} file of time steps"
        )
    if not path.is_file():
        raise DataError(
            f"the data file {path} does not exist" if not path.exists() else f"the data file {path} is not a file"
        )
    if suffix == ".npy":
        sequences = [data_lib._read_npy(path)]
    elif suffix == ".npz":
        sequences = _read_npz(path)
    else:
        header, values = data_lib.read_csv_table(path)
        sequences = _split_by_column(header, values, path)
    return split_sequences(path.name, sequences, test_fraction, seed)


def split_sequences(name: str, sequences: list[np.ndarray], test_fraction: float, seed: int) -> data_lib.Dataset:
    """The `Dataset` of `sequences` (each (T_s, D) or (T_s,)), split as the module says."""
    arrays = [_as_sequence(array, f"sequence {index} of {name}") for index, array in enumerate(sequences)]
    widths = {array.shape[1] for array in arrays}
    if len(widths) > 1:
        raise DataError(
            f"the sequences of {name} have different numbers of columns ({sorted(widths)}); give each the same"
        )
    if len(arrays) == 1:
        (sequence,) = arrays
        num_test = round(len(sequence) * test_fraction)
        if not 1 <= num_test <= len(sequence) - 2:
            raise DataError(
                f"{name} is one sequence of {len(sequence)} steps, too short to hold out test-fraction "
                f"{test_fraction} and keep at least 2 steps to train on"
            )
        train_parts, test_parts = [sequence[:-num_test]], [sequence[-num_test:]]
        follows = True
    else:
        num_test = round(len(arrays) * test_fraction)
        if not 1 <= num_test <= len(arrays) - 1:
            raise DataError(
                f"{name} has {len(arrays)} sequences, too few to hold out test-fraction {test_fraction} "
                "of them and keep both splits non-empty"
            )
        order = np.random.default_rng(seed).permutation(len(arrays))
        test_parts = [arrays[index] for index in sorted(order[:num_test])]
        train_parts = [arrays[index] for index in sorted(order[num_test:])]
        follows = False
    train, test = np.concatenate(train_parts), np.concatenate(test_parts)
    return data_lib.Dataset(
        name=name,
        train=train,
        test=test,
        valid=None,
        train_labels=None,
        test_labels=None,
        image_shape=None,
        binary=bool(np.all((train == 0) | (train == 1)) and np.all((test == 0) | (test == 1))),
        train_lengths=np.array([len(part) for part in train_parts]),
        test_lengths=np.array([len(part) for part in test_parts]),
        test_follows_train=follows,
    )


def sequences_of(steps: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The sequences of a split: its time steps cut at `lengths`."""
    return np.split(np.asarray(steps), np.cumsum(lengths)[:-1])


def _as_sequence(array: np.ndarray, description: str) -> np.ndarray:
    """One sequence as float32 (T, D), T >= 1, after the checks of `data`'s data matrices."""
    array = np.asarray(array)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{description} has shape {array.shape}; expected (T, D) time steps, or (T,) for one feature")
    return data_lib._as_data_matrix(array, description)


def _read_npz(path: pathlib.Path) -> list[np.ndarray]:
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{path} holds a single .npy array; rename it to .npy for one sequence")
            sequences = [archive[name] for name in archive.files]
    except DataError:
        raise
    except Exception as error:  # truncated, corrupted, pickled objects: numpy raises many types
        raise DataError(
            f"could not read {path} as an npz archive ({data_lib._one_line(error)}); save the sequences "
            "with np.savez(path, *sequences)"
        ) from error
    if not sequences:
        raise DataError(f"{path} holds no arrays; save one array per sequence with np.savez(path, *sequences)")
    return sequences


def _split_by_column(header: list[str] | None, values: np.ndarray, path: pathlib.Path) -> list[np.ndarray]:
    """The rows of a csv file as its sequences: one, or cut where the `sequence` column changes."""
    if header is None or SEQUENCE_COLUMN not in header:
        return [values]
    if len(header) != values.shape[1]:
        raise DataError(f"{path} has {len(header)} column names in its header but {values.shape[1]} values a row")
    column = header.index(SEQUENCE_COLUMN)
    features = np.delete(values, column, axis=1)
    if features.shape[1] == 0:
        raise DataError(f"{path} has only the column {SEQUENCE_COLUMN!r}; it needs at least one feature column")
    ids = values[:, column]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    if len(np.unique(ids)) != len(starts):
        raise DataError(
            f"{path}: the rows of each sequence must be consecutive, but a value of the {SEQUENCE_COLUMN!r} "
            "column appears in more than one run of rows; sort the rows by sequence"
        )
    return np.split(features, starts[1:])

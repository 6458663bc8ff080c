"""Sequence data: the shipped Nile series, users' .csv, .npy and .npz files of time steps, and their splits."""

import numpy as np
import pytest

from lvmjax import time_series
from lvmjax.errors import DataError


def test_the_nile_is_one_sequence_whose_last_years_are_the_test_split():
    dataset = time_series.load_sequences("nile")
    assert dataset.train.shape == (80, 1) and dataset.test.shape == (20, 1)
    assert dataset.train_lengths.tolist() == [80] and dataset.test_lengths.tolist() == [20]
    assert dataset.test_follows_train
    # The first and last years of statsmodels' copy: 1871, 1120 and 1970, 740 (10^8 m^3).
    assert dataset.train[0, 0] == 1120 and dataset.test[-1, 0] == 740


def test_a_csv_sequence_column_cuts_the_rows_into_sequences(tmp_path):
    path = tmp_path / "series.csv"
    rows = ["sequence,a,b"] + [f"{index // 5},{index},{index * 2}" for index in range(20)]
    path.write_text("\n".join(rows) + "\n")
    dataset = time_series.load_sequences(path, test_fraction=0.25, seed=0)
    assert dataset.train.shape[1] == 2 and not dataset.test_follows_train
    assert dataset.train_lengths.tolist() == [5, 5, 5] and dataset.test_lengths.tolist() == [5]
    # Each sequence is kept whole and in order: its first column runs 5s, 5s + 1, ...
    for split in (dataset.train, dataset.test):
        for sequence in time_series.sequences_of(split, [5] * (len(split) // 5)):
            np.testing.assert_array_equal(np.diff(sequence[:, 0]), 1)
            assert sequence[0, 0] % 5 == 0


def test_npy_and_npz_files(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(10.0))
    one = time_series.load_sequences(tmp_path / "one.npy")
    assert one.train.shape == (8, 1) and one.test.shape == (2, 1) and one.test_follows_train
    np.savez(tmp_path / "many.npz", np.ones((4, 2)), np.zeros((6, 2)), np.ones((3, 2)))
    many = time_series.load_sequences(tmp_path / "many.npz", test_fraction=0.3)
    assert sorted([*many.train_lengths, *many.test_lengths]) == [3, 4, 6] and len(many.test_lengths) == 1


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda path: path.with_suffix(".csv").write_text("a\n1\nnan\n3\n"), "NaN or infinite"),
        (lambda path: path.with_suffix(".csv").write_text("a\n1\nx\n3\n"), "'x' is not a number"),
        (lambda path: path.with_suffix(".csv").write_text("sequence\n1\n1\n"), "at least one feature column"),
        (
            lambda path: path.with_suffix(".csv").write_text("sequence,a\n0,1\n1,2\n0,3\n1,4\n"),
            "the rows of each sequence must be consecutive",
        ),
        (lambda path: np.save(path.with_suffix(".npy"), np.ones(2)), "too short to hold out"),
        (lambda path: np.save(path.with_suffix(".npy"), np.ones((3, 2, 2))), "expected (T, D) time steps"),
        (lambda path: np.savez(path.with_suffix(".npz"), np.ones((4, 2)), np.ones((4, 3))), "different numbers"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path, write, message):
    base = tmp_path / "data"
    write(base)
    (path,) = tmp_path.iterdir()
    with pytest.raises(DataError, match=None) as error:
        time_series.load_sequences(path)
    assert message in str(error.value)


def test_unknown_names_and_missing_files():
    with pytest.raises(DataError, match="unknown sequence dataset 'digits'; the known ones are 'nile'"):
        time_series.load_sequences("digits")
    with pytest.raises(DataError, match="does not exist"):
        time_series.load_sequences("missing.csv")

"""The datasets load exactly, in every supported format, and bad data fails with a one-line DataError."""

import importlib.resources
import pathlib
import re

import numpy as np
import pytest

from lvmjax import data
from lvmjax.data import DataError

# The real binarized MNIST, beside the repository (never assumed by the package itself).
SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist.npz"

HINT = (
    r"binarized-mnist needs data_dir, a directory holding binarized_mnist\.npz "
    r"or the binarized_mnist_\{train,valid,test\}\.amat files"
)


def raises_one_line(match, function, *args):
    """Asserts that function(*args) raises a DataError whose one-line message matches `match`."""
    with pytest.raises(DataError, match=match) as info:
        function(*args)
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def packaged_digits():
    with np.load(importlib.resources.files("lvmjax") / "datasets" / "digits.npz") as archive:
        return archive["images"], archive["labels"]


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_types_and_splits():
    digits = data.load_digits()
    assert digits.name == "digits"
    assert digits.train.shape == (1500, 64) and digits.train.dtype == np.float32
    assert digits.test.shape == (297, 64) and digits.test.dtype == np.float32
    assert digits.valid is None
    assert digits.train_labels.shape == (1500,) and digits.train_labels.dtype == np.int32
    assert digits.test_labels.shape == (297,) and digits.test_labels.dtype == np.int32
    assert digits.image_shape == (8, 8)
    assert digits.binary is True
    for split in (digits.train, digits.test):
        assert set(np.unique(split)) == {0.0, 1.0}
    assert set(np.unique(digits.train_labels)) == set(range(10))
    assert set(np.unique(digits.test_labels)) == set(range(10))
    # scikit-learn's first images are the digits 0, 1, 2, ..., 9 in turn.
    np.testing.assert_array_equal(digits.train_labels[:10], np.arange(10))


def test_digits_are_the_packaged_pixels_thresholded_at_8():
    images, labels = packaged_digits()
    assert images.shape == (1797, 64) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 16
    digits = data.load_digits()
    binary = np.concatenate([digits.train, digits.test])
    np.testing.assert_array_equal(binary, (images >= 8).astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([digits.train_labels, digits.test_labels]), labels)
    # The threshold exactly: 7 becomes 0 and 8 becomes 1.
    assert np.all(binary[images == 7] == 0) and np.all(binary[images == 8] == 1)
    assert binary.sum() == np.count_nonzero(images >= 8) == 37151


def test_digits_equal_scikit_learns_binarized_and_split():
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_digits()
    digits = data.load_digits()
    binary = (reference.data >= 8).astype(np.float32)
    np.testing.assert_array_equal(digits.train, binary[:1500])
    np.testing.assert_array_equal(digits.test, binary[1500:])
    np.testing.assert_array_equal(digits.train_labels, reference.target[:1500])
    np.testing.assert_array_equal(digits.test_labels, reference.target[1500:])


def test_load_dataset_by_name():
    assert data.DATASETS == ("digits", "binarized-mnist", "mnist", "fashion-mnist")
    by_name, direct = data.load_dataset("digits"), data.load_digits()
    for field in ("train", "test", "train_labels", "test_labels"):
        np.testing.assert_array_equal(getattr(by_name, field), getattr(direct, field))


# ----------------------------------------------------------------------------- binarized MNIST


@pytest.fixture
def tiny_mnist():
    """20 training, 5 validation and 5 test images of 784 random 0/1 pixels."""
    rng = np.random.default_rng(0)
    return {
        split: rng.integers(0, 2, size=(rows, 784), dtype=np.uint8)
        for split, rows in (("train", 20), ("valid", 5), ("test", 5))
    }


def write_npz(directory, arrays, name="binarized_mnist.npz"):
    directory.mkdir(exist_ok=True)
    np.savez(directory / name, **arrays)
    return directory


def write_amat(directory, arrays, fmt="%d", newline="\n"):
    directory.mkdir(exist_ok=True)
    for split, array in arrays.items():
        np.savetxt(directory / f"binarized_mnist_{split}.amat", array, fmt=fmt, newline=newline)
    return directory


def assert_is_tiny_mnist(dataset, arrays):
    assert dataset.name == "binarized-mnist"
    for split in ("train", "valid", "test"):
        loaded = getattr(dataset, split)
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, arrays[split])
    assert dataset.train_labels is None and dataset.test_labels is None
    assert dataset.image_shape == (28, 28)
    assert dataset.binary is True


def test_binarized_mnist_from_npz(tmp_path, tiny_mnist):
    directory = write_npz(tmp_path / "npz", tiny_mnist)
    assert_is_tiny_mnist(data.load_binarized_mnist(directory), tiny_mnist)
    assert_is_tiny_mnist(data.load_dataset("binarized-mnist", str(directory)), tiny_mnist)


def test_binarized_mnist_from_amat_equals_npz(tmp_path, tiny_mnist):
    from_npz = data.load_binarized_mnist(write_npz(tmp_path / "npz", tiny_mnist))
    from_amat = data.load_binarized_mnist(write_amat(tmp_path / "amat", tiny_mnist))
    assert_is_tiny_mnist(from_amat, tiny_mnist)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(from_amat, split), getattr(from_npz, split))


@pytest.mark.parametrize(
    ("fmt", "newline"), [("%.1f", "\n"), ("%d", "\r\n"), ("%d ", "\n")], ids=["decimals", "crlf", "trailing-space"]
)
def test_binarized_mnist_from_amat_of_other_layouts(tmp_path, tiny_mnist, fmt, newline):
    directory = write_amat(tmp_path, tiny_mnist, fmt=fmt, newline=newline)
    with open(directory / "binarized_mnist_test.amat", "a") as file:
        file.write("\n  \n")  # blank lines at the end are ignored
    assert_is_tiny_mnist(data.load_binarized_mnist(directory), tiny_mnist)


def test_npz_is_preferred_over_amat(tmp_path, tiny_mnist):
    write_amat(tmp_path, {split: 1 - array for split, array in tiny_mnist.items()})
    write_npz(tmp_path, tiny_mnist)
    assert_is_tiny_mnist(data.load_binarized_mnist(tmp_path), tiny_mnist)


def test_binarized_mnist_real_file():
    if not SHARED_MNIST.is_file():
        pytest.skip(f"the real binarized MNIST is not at {SHARED_MNIST}")
    mnist = data.load_dataset("binarized-mnist", SHARED_MNIST.parent)
    assert mnist.train.shape == (50000, 784)
    assert mnist.valid.shape == (10000, 784)
    assert mnist.test.shape == (10000, 784)
    for split in (mnist.train, mnist.valid, mnist.test):
        assert split.dtype == np.float32
        assert np.all((split == 0) | (split == 1)) and 0 < split.mean() < 1
    assert mnist.image_shape == (28, 28) and mnist.binary


# ----------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_the_known_names():
    raises_one_line(
        r"^unknown dataset 'cifar10'; the known datasets are 'digits', 'binarized-mnist', 'mnist', "
        r"'fashion-mnist', "
        r"or the path of a \.npy, \.npz, \.csv file$",
        data.load_dataset,
        "cifar10",
    )


def test_binarized_mnist_without_data_dir():
    raises_one_line(f"^{HINT}$", data.load_dataset, "binarized-mnist")
    raises_one_line(f"^{HINT}$", data.load_binarized_mnist, None)


def test_data_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    raises_one_line(
        f"^the data directory {re.escape(str(missing))} does not exist; {HINT}$", data.load_binarized_mnist, missing
    )


def test_data_dir_that_is_a_file(tmp_path, tiny_mnist):
    directory = write_npz(tmp_path, tiny_mnist)
    raises_one_line(
        r"binarized_mnist\.npz is a file, not a directory; " + HINT,
        data.load_binarized_mnist,
        directory / "binarized_mnist.npz",
    )


def test_data_dir_with_neither_format(tmp_path, tiny_mnist):
    raises_one_line(
        f"^the data directory {re.escape(str(tmp_path))} holds neither binarized_mnist.npz nor all "
        r"three binarized_mnist_\{train,valid,test\}\.amat files; " + HINT,
        data.load_binarized_mnist,
        tmp_path,
    )
    write_amat(tmp_path, {"train": tiny_mnist["train"], "test": tiny_mnist["test"]})
    raises_one_line(
        r"\(it has only binarized_mnist_train\.amat, binarized_mnist_test\.amat\)", data.load_binarized_mnist, tmp_path
    )


def test_npz_without_a_split(tmp_path, tiny_mnist):
    del tiny_mnist["valid"]
    write_npz(tmp_path, tiny_mnist)
    raises_one_line(
        r"binarized_mnist\.npz has no array 'valid' \(it has train, test\); "
        r"it needs the arrays train, valid, test",
        data.load_binarized_mnist,
        tmp_path,
    )


@pytest.mark.parametrize("fmt", ["npz", "amat"])
def test_wrong_width(tmp_path, tiny_mnist, fmt):
    tiny_mnist["valid"] = tiny_mnist["valid"][:, :783]
    (write_npz if fmt == "npz" else write_amat)(tmp_path, tiny_mnist)
    message = {
        "npz": r"^array 'valid' in .*binarized_mnist\.npz has shape \(5, 783\): expected 784 columns, got 783; ",
        "amat": r"^.*binarized_mnist_valid\.amat line 1: expected 784 columns, got 783; ",
    }[fmt]
    raises_one_line(message, data.load_binarized_mnist, tmp_path)


def test_truncated_amat_names_the_short_line(tmp_path, tiny_mnist):
    write_amat(tmp_path, tiny_mnist)
    path = tmp_path / "binarized_mnist_train.amat"
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 2 * 84 - 1])  # the last line loses its last 84 values and newline
    raises_one_line(
        r"binarized_mnist_train\.amat line 20: expected 784 columns, got 700; "
        r"each line must hold one image, so the file may be truncated or corrupted$",
        data.load_binarized_mnist,
        tmp_path,
    )


def test_npz_of_one_dimensional_arrays(tmp_path, tiny_mnist):
    tiny_mnist["test"] = tiny_mnist["test"].ravel()
    write_npz(tmp_path, tiny_mnist)
    raises_one_line(
        r"array 'test' in .* has shape \(3920,\); expected a 2-D array \(N, 784\)", data.load_binarized_mnist, tmp_path
    )


@pytest.mark.parametrize("fmt", ["npz", "amat"])
def test_empty_split(tmp_path, tiny_mnist, fmt):
    tiny_mnist["test"] = tiny_mnist["test"][:0]
    if fmt == "npz":
        write_npz(tmp_path, tiny_mnist)
        message = r"^array 'test' in .*binarized_mnist\.npz is empty \(shape \(0, 784\)\)"
    else:
        write_amat(tmp_path, tiny_mnist)
        message = r"^.*binarized_mnist_test\.amat is empty; it must hold one image per line"
    raises_one_line(message, data.load_binarized_mnist, tmp_path)


@pytest.mark.parametrize("fmt", ["npz", "amat"])
def test_values_that_are_not_binary(tmp_path, tiny_mnist, fmt):
    train = tiny_mnist["train"].astype(np.float32)
    train[0, 3], train[4, 5], train[19, 783] = 0.5, 2.0, -1.0
    tiny_mnist["train"] = train
    if fmt == "npz":
        write_npz(tmp_path, tiny_mnist)
        name = r"array 'train' in .*binarized_mnist\.npz"
    else:
        write_amat(tmp_path, tiny_mnist, fmt="%g")
        name = r".*binarized_mnist_train\.amat"
    raises_one_line(
        rf"^{name} has 3 values that are not 0 or 1 \(for example 0\.5\); "
        "a Bernoulli likelihood needs binary data",
        data.load_binarized_mnist,
        tmp_path,
    )


def test_npz_of_text(tmp_path, tiny_mnist):
    tiny_mnist["train"] = np.array([["0"] * 784])
    write_npz(tmp_path, tiny_mnist)
    raises_one_line(r"array 'train' in .* has dtype <U1; expected numbers 0 and 1", data.load_binarized_mnist, tmp_path)


def test_truncated_npz(tmp_path, tiny_mnist):
    path = write_npz(tmp_path, tiny_mnist) / "binarized_mnist.npz"
    path.write_bytes(path.read_bytes()[:5000])
    raises_one_line(
        rf"^could not read {re.escape(str(path))} as an npz archive \(BadZipFile: File is not a zip "
        r"file\); the file may be truncated or corrupted; download or convert it again$",
        data.load_binarized_mnist,
        tmp_path,
    )


@pytest.mark.parametrize("offset", [60, 400], ids=["in-the-header", "in-the-pixels"])
def test_corrupted_npz(tmp_path, tiny_mnist, offset):
    path = write_npz(tmp_path, tiny_mnist) / "binarized_mnist.npz"
    content = bytearray(path.read_bytes())
    content[content.index(b"train.npy") + offset] ^= 0xFF
    path.write_bytes(bytes(content))
    raises_one_line(
        rf"^could not read {re.escape(str(path))} \(\w+: .*\); the file may be truncated or corrupted",
        data.load_binarized_mnist,
        tmp_path,
    )


def test_npz_that_is_not_an_archive(tmp_path, tiny_mnist):
    tmp_path.joinpath("binarized_mnist.npz").write_text("0 1 0 1\n")
    raises_one_line(
        r"could not read .*binarized_mnist\.npz as an npz archive \(ValueError: ", data.load_binarized_mnist, tmp_path
    )
    with open(tmp_path / "binarized_mnist.npz", "wb") as file:
        np.save(file, tiny_mnist["train"])
    raises_one_line(
        r"binarized_mnist\.npz holds a single array, not an npz archive of the arrays train, valid, test",
        data.load_binarized_mnist,
        tmp_path,
    )


def test_amat_with_text_that_is_not_a_number(tmp_path, tiny_mnist):
    write_amat(tmp_path, tiny_mnist)
    path = tmp_path / "binarized_mnist_valid.amat"
    path.write_bytes(path.read_bytes().replace(b"0", b"x", 1))
    raises_one_line(
        r"binarized_mnist_valid\.amat holds text that is not a number \(ValueError: could not convert "
        r"string to float: 'x'\)",
        data.load_binarized_mnist,
        tmp_path,
    )
    path.write_bytes(b"\x00\xff\xfe" * 100)
    raises_one_line(
        r"binarized_mnist_valid\.amat is not a text file of numbers \(UnicodeDecodeError: ",
        data.load_binarized_mnist,
        tmp_path,
    )


# ----------------------------------------------------------------------------- users' files


def test_continuous_digits_dequantize_the_pixels_with_a_fixed_seed():
    images, _ = packaged_digits()
    digits = data.load_digits(continuous=True)
    assert not digits.binary and digits.train.dtype == np.float32
    values = np.concatenate([digits.train, digits.test])
    np.testing.assert_array_equal(np.floor(values.astype(np.float64) * 17), images)  # each pixel's own bin
    np.testing.assert_array_equal(
        values,
        data.load_dataset("digits", continuous=True).train.tolist()
        + data.load_dataset("digits", continuous=True).test.tolist(),
    )
    # U[0, 1) noise: the fractional parts have mean 1/2 to within 4 standard errors (1/sqrt(12 n)).
    fraction = values.astype(np.float64) * 17 - images
    assert abs(fraction.mean() - 0.5) < 4 / np.sqrt(12 * fraction.size)


def test_binarized_mnist_has_no_continuous_version():
    raises_one_line("has only the values 0 and 1", lambda: data.load_dataset("binarized-mnist", continuous=True))


@pytest.fixture
def rows():
    return np.arange(40, dtype=np.float64).reshape(10, 4) / 7


def test_every_format_gives_the_same_split(tmp_path, rows):
    np.save(tmp_path / "a.npy", rows)
    np.savez(tmp_path / "a.npz", rows=rows)
    np.savetxt(tmp_path / "a.csv", rows, delimiter=",", header="w,x,y,z", comments="")
    np.savetxt(tmp_path / "b.csv", rows, delimiter=",")  # no header
    order = np.random.default_rng(5).permutation(10)
    for name in ("a.npy", "a.npz", "a.csv", "b.csv"):
        loaded = data.load_file(tmp_path / name, test_fraction=0.3, seed=5)
        assert loaded.name == name and loaded.image_shape is None and not loaded.binary
        np.testing.assert_allclose(loaded.test, rows[order[:3]].astype(np.float32), rtol=1e-7)
        np.testing.assert_allclose(loaded.train, rows[order[3:]].astype(np.float32), rtol=1e-7)
    assert data.load_dataset(str(tmp_path / "a.npy"), test_fraction=0.3, seed=5).test.shape == (3, 4)


def test_an_npz_with_train_and_test_is_used_as_it_is(tmp_path, rows):
    labels = np.arange(10) % 3
    np.savez(tmp_path / "s.npz", train=rows[:7] > 1, test=rows[7:] > 1, train_labels=labels[:7], test_labels=labels[7:])
    loaded = data.load_file(tmp_path / "s.npz")
    assert loaded.binary and loaded.train.shape == (7, 4) and loaded.test.shape == (3, 4)
    np.testing.assert_array_equal(loaded.test_labels, labels[7:])


def test_bad_users_files_get_one_line(tmp_path, rows):
    np.save(tmp_path / "good.npy", rows)
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:100])
    np.save(tmp_path / "vector.npy", rows[0])
    np.save(tmp_path / "strings.npy", np.array([["a", "b"]]))
    np.savez(tmp_path / "two.npz", x=rows, y=rows)
    np.savez(tmp_path / "columns.npz", train=rows, test=rows[:, :3])
    np.savez(tmp_path / "labels.npz", train=rows, test=rows, train_labels=np.zeros(3, np.int64))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    (tmp_path / "text.csv").write_text("1,2\n3,abc\n")
    with_inf = rows.copy()
    with_inf[2, 1] = np.inf
    np.save(tmp_path / "inf.npy", with_inf)
    (tmp_path / "data.txt").write_text("1 2\n")
    raises_one_line(r"truncated\.npy as a \.npy array", data.load_file, tmp_path / "truncated.npy")
    raises_one_line(r"shape \(4,\); expected a 2-D array", data.load_file, tmp_path / "vector.npy")
    raises_one_line(r"could not read .*strings\.npy|dtype <U1", data.load_file, tmp_path / "strings.npy")
    raises_one_line("it needs both 'train' and 'test', or exactly one array", data.load_file, tmp_path / "two.npz")
    raises_one_line("array 'test' in .* has 3 columns but 'train' has 4", data.load_file, tmp_path / "columns.npz")
    raises_one_line("expected 10 integer labels, one per row", data.load_file, tmp_path / "labels.npz")
    raises_one_line("has no rows of numbers", data.load_file, tmp_path / "empty.csv")
    raises_one_line("line 2: expected 3 comma-separated values, got 2", data.load_file, tmp_path / "ragged.csv")
    raises_one_line("line 2: 'abc' is not a number", data.load_file, tmp_path / "text.csv")
    raises_one_line(
        r"1 values that are NaN or infinite \(the first in row 2, column 1\)", data.load_file, tmp_path / "inf.npy"
    )
    raises_one_line("data files must be .npy, .npz, .csv", data.load_file, tmp_path / "data.txt")
    raises_one_line("does not exist", data.load_file, tmp_path / "absent.npy")
    raises_one_line("too few to hold out test-fraction 0.01", data.load_file, tmp_path / "good.npy", 0.01)
    raises_one_line("strictly between 0 and 1", data.load_file, tmp_path / "good.npy", 1.0)
    assert (tmp_path / "good.npy").read_bytes()[:6] == b"\x93NUMPY"  # reading never writes

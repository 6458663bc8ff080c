"""MNIST and Fashion-MNIST load exactly from IDX files, plain or gzipped; damaged files fail with a one-line
DataError naming the file; dynamic binarization draws x ~ Bernoulli(p)."""

import gzip
import hashlib
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_within_stderr

from lvmjax import data
from lvmjax.data import DataError

IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
HINT = (
    "mnist needs data_dir, a directory holding its four IDX files train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain or gzipped (.gz)"
)
TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array, code=None):
    """The IDX encoding of `array`, written from the format's definition: 0x0000, type code, number of
    dimensions, big-endian uint32 sizes, big-endian values."""
    array = np.asarray(array)
    code = TYPE_CODES[array.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, content, gzipped=False):
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


@pytest.fixture
def tiny_idx():
    """12 training and 5 test images of 28x28 random grey levels (0 and 255 included), labels 0..9."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, rows in (("train", 12), ("test", 5)):
        images = rng.integers(0, 256, size=(rows, 28, 28), dtype=np.uint8)
        images[0, 0, :2] = 0, 255
        arrays[split] = images, rng.integers(0, 10, size=rows, dtype=np.uint8)
    return arrays


def write_idx_dir(directory, arrays, gzipped=(False, False, False, False)):
    """The four files of `arrays` in `directory`, each gzipped (with the suffix .gz) where `gzipped` says."""
    directory.mkdir(exist_ok=True)
    files = [(IMAGES[split], arrays[split][0]) for split in ("train", "test")]
    files += [(LABELS[split], arrays[split][1]) for split in ("train", "test")]
    for (base, array), compress in zip(files, gzipped, strict=True):
        write(directory / (base + ".gz" if compress else base), idx_bytes(array), compress)
    return directory


def raises_one_line(match, function, *args, **kwargs):
    """Asserts that function(*args, **kwargs) raises a DataError whose one-line message matches `match`."""
    with pytest.raises(DataError, match=match) as info:
        function(*args, **kwargs)
    assert "\n" not in str(info.value), str(info.value)
    return str(info.value)


def snapshot(directory):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())}


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "gzipped", [(False,) * 4, (True,) * 4, (True, False, False, True)], ids=["plain", "gzipped", "mixed"]
)
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_round_trip(tmp_path, tiny_idx, gzipped, name):
    directory = write_idx_dir(tmp_path / "idx", tiny_idx, gzipped)
    before = snapshot(directory)
    dataset = data.load_dataset(name, str(directory))
    assert dataset.name == name
    for split, rows in (("train", 12), ("test", 5)):
        images, labels = tiny_idx[split]
        values = getattr(dataset, split)
        assert values.shape == (rows, 784) and values.dtype == np.float32
        np.testing.assert_array_equal(values, (images.reshape(rows, 784) / 255).astype(np.float32))
        np.testing.assert_array_equal(np.round(values.astype(np.float64) * 255), images.reshape(rows, 784))
        split_labels = getattr(dataset, f"{split}_labels")
        assert split_labels.dtype == np.int32
        np.testing.assert_array_equal(split_labels, labels)
    assert dataset.train[0, :2].tolist() == [0.0, 1.0]
    assert dataset.valid is None and dataset.image_shape == (28, 28)
    assert dataset.binary is False and dataset.grey_levels is True
    assert snapshot(directory) == before  # reading never writes


def test_the_names_are_known():
    assert "mnist" in data.DATASETS and "fashion-mnist" in data.DATASETS
    assert data.load_digits().grey_levels is False  # the field's default keeps older datasets as they were


def test_plain_files_are_preferred_and_gzip_is_told_by_content(tmp_path, tiny_idx):
    directory = write_idx_dir(tmp_path, tiny_idx)
    inverted = {split: (255 - images, labels) for split, (images, labels) in tiny_idx.items()}
    write_idx_dir(tmp_path, inverted, (True,) * 4)  # beside the plain files: ignored
    np.testing.assert_array_equal(data.load_mnist(directory).train * 255, tiny_idx["train"][0].reshape(12, 784))
    # A decompressed file that kept its .gz name, and a gzipped one without it, read the same.
    images = tiny_idx["train"][0]
    swapped_gz = write(tmp_path / "a.gz", idx_bytes(images))
    swapped_plain = write(tmp_path / "b", idx_bytes(images), gzipped=True)
    np.testing.assert_array_equal(data.read_idx(swapped_gz), images)
    np.testing.assert_array_equal(data.read_idx(swapped_plain), images)


@pytest.mark.parametrize("dtype", list(TYPE_CODES), ids=lambda dtype: dtype.__name__)
def test_read_idx_of_every_type(tmp_path, dtype):
    array = (np.arange(-12, 12).reshape(2, 3, 4) * 3).astype(dtype)  # multi-byte values test the byte order
    if dtype == np.uint8:
        array = array.view(np.uint8)
    for gzipped in (False, True):
        loaded = data.read_idx(write(tmp_path / f"x{gzipped}", idx_bytes(array), gzipped))
        assert loaded.dtype == dtype and loaded.dtype.isnative and loaded.shape == (2, 3, 4)
        np.testing.assert_array_equal(loaded, array)
    assert data.read_idx(write(tmp_path / "empty", idx_bytes(np.zeros((0, 5), dtype)))).shape == (0, 5)


def test_continuous_dequantizes_each_pixel_in_its_own_bin(tmp_path, tiny_idx):
    directory = write_idx_dir(tmp_path, tiny_idx)
    dataset = data.load_dataset("mnist", directory, continuous=True)
    assert dataset.train.dtype == np.float32 and not dataset.binary and not dataset.grey_levels
    for split in ("train", "test"):
        values, pixels = getattr(dataset, split), tiny_idx[split][0].reshape(-1, 784)
        np.testing.assert_array_equal(np.floor(values.astype(np.float64) * 256), pixels)
    np.testing.assert_array_equal(dataset.test, data.load_mnist(directory, continuous=True).test)  # a fixed seed
    fraction = dataset.train.astype(np.float64) * 256 - tiny_idx["train"][0].reshape(-1, 784)
    assert abs(fraction.mean() - 0.5) < 4 / np.sqrt(12 * fraction.size)  # U[0, 1) noise, within 4 standard errors


# ----------------------------------------------------------------------------- errors


def test_missing_data_dir_and_files(tmp_path, tiny_idx):
    raises_one_line(f"^{re.escape(HINT)}$", data.load_dataset, "mnist")
    raises_one_line(f"^{re.escape(HINT.replace('mnist', 'fashion-mnist', 1))}$", data.load_dataset, "fashion-mnist")
    missing = tmp_path / "nowhere"
    raises_one_line(
        f"^the data directory {re.escape(str(missing))} does not exist; {re.escape(HINT)}$", data.load_mnist, missing
    )
    raises_one_line(
        f"^the data directory {re.escape(str(tmp_path))} lacks train-images-idx3-ubyte, "
        r"train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain or \.gz; "
        f"{re.escape(HINT)}$",
        data.load_mnist,
        tmp_path,
    )
    write_idx_dir(tmp_path, tiny_idx, (True, False, False, False))
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    raises_one_line(
        r"lacks t10k-labels-idx1-ubyte, plain or \.gz \(it has only train-images-idx3-ubyte\.gz, "
        r"train-labels-idx1-ubyte, t10k-images-idx3-ubyte\); mnist needs data_dir",
        data.load_mnist,
        tmp_path,
    )
    raises_one_line(r"is a file, not a directory", data.load_mnist, tmp_path / "t10k-images-idx3-ubyte")


def corrupt(tmp_path, tiny_idx, base, content, gzipped=False):
    """The data directory with the file `base` replaced by `content`, and that file's path."""
    directory = write_idx_dir(tmp_path, tiny_idx)
    (directory / base).unlink()
    return directory, write(directory / (base + ".gz" if gzipped else base), content, gzipped)


def header(code, *shape):
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def test_truncated_and_overlong_files(tmp_path, tiny_idx):
    good = idx_bytes(tiny_idx["train"][0])
    cases = [
        (
            good[:-100],
            r"is truncated: its header promises a 12x28x28 array of unsigned bytes, 9408 bytes after the "
            r"header, but it holds 9308; download it again$",
        ),
        (good[:10], r"is truncated: its header has 3 dimensions, 16 bytes, but the file holds 10; download it again$"),
        (good[:3], r"is truncated: it holds 3 bytes, fewer than the 4 of an IDX file's magic number"),
        (
            good + b"\x00" * 7,
            r"holds 7 bytes more than its header promises \(a 12x28x28 array of unsigned bytes, "
            r"9408 bytes after the header\); the file is corrupted, so download it again$",
        ),
    ]
    for gzipped in (False, True):
        for content, message in cases:
            directory, path = corrupt(tmp_path, tiny_idx, IMAGES["train"], content, gzipped)
            raises_one_line(f"^{re.escape(str(path))} {message}", data.load_mnist, directory)


def test_not_idx_data(tmp_path, tiny_idx):
    good = idx_bytes(tiny_idx["test"][1])
    directory, path = corrupt(tmp_path, tiny_idx, LABELS["test"], b"\x08\x03" + good[2:])
    raises_one_line(
        f"^{re.escape(str(path))} is neither an IDX file nor gzipped: it starts with the bytes 0x0803, "
        "where an IDX file starts with 0x0000 and a gzip file with 0x1f8b; download it again$",
        data.load_mnist,
        directory,
    )
    directory, path = corrupt(tmp_path, tiny_idx, LABELS["test"], b"<!DOCTYPE html><title>403 Forbidden</title>")
    raises_one_line(
        rf"^{re.escape(str(path))} is neither .* \(it looks like a web page: was the download refused\?\)",
        data.load_mnist,
        directory,
    )
    directory, path = corrupt(tmp_path, tiny_idx, LABELS["test"], b"\x00\x00\x07" + good[3:])
    raises_one_line(
        f"^{re.escape(str(path))} has the IDX type code 0x07, not one of 0x08 \\(unsigned byte\\), "
        r"0x09 \(signed byte\), 0x0b \(short\), 0x0c \(int\), 0x0d \(float\), 0x0e \(double\); "
        "the file is corrupted, so download it again$",
        data.load_mnist,
        directory,
    )


def test_damaged_gzip(tmp_path, tiny_idx):
    compressed = gzip.compress(idx_bytes(tiny_idx["train"][0]))
    flipped = bytearray(compressed)
    flipped[len(flipped) // 2] ^= 0xFF
    directory = write_idx_dir(tmp_path, tiny_idx, (True, False, False, False))
    path = directory / (IMAGES["train"] + ".gz")
    for content, error in [
        (compressed[: len(compressed) // 2], r"EOFError: Compressed file ended .+"),
        (bytes(flipped), r"\w+: .+"),  # zlib's error or a CRC mismatch, depending on the byte
        (compressed[:2] + b"garbage" * 20, r"\w+: .+"),
    ]:
        path.write_bytes(content)
        raises_one_line(
            f"^could not decompress {re.escape(str(path))} \\({error}\\); the gzip file is truncated or "
            "corrupted, so download it again$",
            data.load_mnist,
            directory,
        )
    path.write_bytes(np.random.default_rng(0).bytes(500))  # garbage that is not even gzip
    raises_one_line(f"^{re.escape(str(path))} is neither an IDX file nor gzipped", data.load_mnist, directory)


def test_images_and_labels_of_the_wrong_kind(tmp_path, tiny_idx):
    train_images, train_labels = tiny_idx["train"]
    images_rule = r"but the images of mnist are unsigned bytes of shape \(N, 28, 28\) with N >= 1; check that it is"
    labels_rule = r"but the labels of mnist are unsigned bytes of shape \(N,\); check that it is the right file"
    cases = [
        (
            IMAGES["train"],
            idx_bytes(train_images[:, :27, :27]),
            rf"holds uint8 values of shape \(12, 27, 27\), {images_rule}",
        ),
        (IMAGES["train"], idx_bytes(train_labels), rf"holds uint8 values of shape \(12,\), {images_rule}"),
        (
            IMAGES["train"],
            idx_bytes(train_images.astype(np.int32)),
            rf"holds int32 values of shape \(12, 28, 28\), "
            f"{images_rule}",
        ),
        (IMAGES["train"], header(0x08, 0, 28, 28), rf"holds uint8 values of shape \(0, 28, 28\), {images_rule}"),
        (LABELS["train"], idx_bytes(train_images), rf"holds uint8 values of shape \(12, 28, 28\), {labels_rule}"),
        (
            LABELS["train"],
            idx_bytes(np.where(train_labels == train_labels[3], 10, train_labels)),
            r"has the label 10, but the labels of mnist are the classes 0\.\.9; the file is corrupted",
        ),
    ]
    for base, content, message in cases:
        directory, path = corrupt(tmp_path, tiny_idx, base, content)
        raises_one_line(f"^{re.escape(str(path))} {message}", data.load_mnist, directory)


def test_images_and_labels_that_differ_in_number(tmp_path, tiny_idx):
    directory, labels_path = corrupt(tmp_path, tiny_idx, LABELS["test"], idx_bytes(tiny_idx["test"][1][:4]))
    images_path = directory / IMAGES["test"]
    before = snapshot(directory)
    raises_one_line(
        f"^{re.escape(str(labels_path))} has 4 labels but {re.escape(str(images_path))} has 5 images; "
        "they must be the same test split of mnist, so download both files again$",
        data.load_mnist,
        directory,
    )
    assert snapshot(directory) == before


# ----------------------------------------------------------------------------- dynamic binarization


PROBABILITIES = np.array([[0.0, 1.0, 0.5, 0.01], [0.99, 0.3, 0.7, 0.125]], np.float32)


def test_binarize_draws_bernoulli_with_mean_p():
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = np.asarray(jax.jit(jax.vmap(data.binarize, in_axes=(0, None)))(keys, PROBABILITIES))
    assert draws.shape == (4000, 2, 4) and draws.dtype == np.float32
    assert set(np.unique(draws)) == {0.0, 1.0}
    assert np.all(draws[:, 0, 0] == 0) and np.all(draws[:, 0, 1] == 1)  # p = 0 and p = 1 are certain
    assert_within_stderr(draws, PROBABILITIES)  # E[x_d] = p_d within 4 standard errors, for every pixel
    # Pixels are independent: the pair (0.5, 0.3) is on together with probability 0.15.
    assert_within_stderr(draws[:, 0, 2] * draws[:, 1, 1], 0.15)


def test_binarize_is_a_pure_function_of_its_key():
    binarize = jax.jit(data.binarize)
    images = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 784)), jnp.float32)
    first = binarize(jax.random.PRNGKey(3), images)
    assert first.shape == images.shape and first.dtype == jnp.float32
    np.testing.assert_array_equal(first, binarize(jax.random.PRNGKey(3), images))
    assert np.any(np.asarray(first) != np.asarray(binarize(jax.random.PRNGKey(4), images)))


def test_binarize_split_is_fixed_by_its_seed(tmp_path, tiny_idx):
    test = data.load_mnist(write_idx_dir(tmp_path, tiny_idx)).test
    fixed = data.binarize_split(test)
    assert isinstance(fixed, np.ndarray) and fixed.shape == (5, 784) and fixed.dtype == np.float32
    assert set(np.unique(fixed)) == {0.0, 1.0}
    np.testing.assert_array_equal(fixed, data.binarize_split(test, data.BINARIZATION_SEED))
    np.testing.assert_array_equal(fixed, data.binarize(jax.random.PRNGKey(data.BINARIZATION_SEED), test))
    assert np.any(fixed != data.binarize_split(test, seed=1))
    pixels = tiny_idx["test"][0].reshape(5, 784)
    assert np.all(fixed[pixels == 0] == 0) and np.all(fixed[pixels == 255] == 1)


# ----------------------------------------------------------------------------- training on grey levels


@pytest.mark.standard_promotion
def test_bernoulli_models_train_on_fresh_binarizations_and_test_on_a_fixed_one(tmp_path, tiny_idx):
    from lvmjax import app
    from lvmjax.app.specs import neural

    directory = write_idx_dir(tmp_path / "mnist", tiny_idx)
    config = app.FitConfig(
        model="vae", data="mnist", data_dir=str(directory), epochs=1, batch_size=4, hidden=(8,), latent_dim=2
    )
    dataset = app.load_data(config)
    grey = data.load_mnist(directory)
    np.testing.assert_array_equal(dataset.train, grey.train)  # grey levels, binarized in each step
    np.testing.assert_array_equal(dataset.test, data.binarize_split(grey.test))
    mob = app.load_data(app.FitConfig(model="mob", data="mnist", data_dir=str(directory)))
    assert mob.binary and not mob.grey_levels and set(np.unique(mob.train)) <= {0.0, 1.0}

    seen = []
    step = neural._binarizing(lambda state, key, batch: (state, seen.append(batch)), indexed=False)
    probabilities = jnp.full((2000, 3), 0.3)
    step(None, jax.random.key(0), probabilities)
    step(None, jax.random.key(1), probabilities)
    first, second = np.asarray(seen[0]), np.asarray(seen[1])
    assert set(np.unique(first)) == {0.0, 1.0} and not np.array_equal(first, second)
    assert abs(first.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / first.size)

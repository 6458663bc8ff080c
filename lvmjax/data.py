"""Datasets for latent variable models: images for a Bernoulli likelihood p(x | z; θ), and
real-valued rows for the Gaussian models.

Every dataset is a `Dataset`: float32 numpy arrays of shape (N, D), one
datapoint (a flattened image) per row (conversion to JAX arrays is the
caller's). Four are known by name:

- ``"digits"``: scikit-learn's copy of the UCI optical recognition of handwritten
  digits test set, 1797 images of 8x8 with values 0..16, binarized as
  pixel >= 8. It ships inside the package (``lvmjax/datasets/digits.npz``), so
  loading it needs neither a download nor scikit-learn. The first 1500 images, in
  scikit-learn's order, are the training set and the other 297 the test set.
- ``"binarized-mnist"``: the statically binarized MNIST of Larochelle & Murray
  (2011), 50,000 training, 10,000 validation and 10,000 test images of 28x28,
  the standard benchmark of Burda et al. (2016). It is read from a directory
  the user names, holding ``binarized_mnist.npz`` (arrays ``train``, ``valid``,
  ``test``) or the original text files ``binarized_mnist_{train,valid,test}.amat``.
- ``"mnist"`` and ``"fashion-mnist"``: LeCun's MNIST digits and Zalando's
  Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), 60,000 training and 10,000 test
  images of 28x28 with labels, read from the four IDX files of their
  distribution (`IDX_FILES`, each plain or gzipped) in a directory the user
  names. The values are the grey levels scaled to [0, 1], pixel / 255: not
  binary, and flagged ``grey_levels``.

A Bernoulli model reads a grey-level dataset (``grey_levels``) by dynamic
binarization (Burda et al. 2016): each pixel's grey level p_d is the
probability that it is on, and the training loop draws x ~ Bernoulli(p) afresh
for every minibatch with `binarize`, so the model seldom sees the same binary
image twice. Evaluation needs the same data in every run, so the test set is
binarized once, from the fixed seed `BINARIZATION_SEED`, by `binarize_split`.
Binary datasets (``binary``) are used as they are.

Real-valued models (Gaussian mixture, factor analysis) take ``digits``,
``mnist`` and ``fashion-mnist`` with ``continuous=True``: the pixel values,
uniformly dequantized. Any other name ending in ``.npy``, ``.npz`` or ``.csv`` is
a user's file of rows of numbers, split into training and test sets at random
(`load_file`).

Anything wrong with the data raises a `DataError` whose message is one line
saying what is wrong and how to fix it. Loading never writes anything.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import pathlib
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax._validation import check_binary, is_real_dtype
from lvmjax.errors import DataError

__all__ = [
    "BINARIZATION_SEED",
    "DATASETS",
    "DEQUANTIZATION_SEED",
    "FILE_SUFFIXES",
    "IDX_DATASETS",
    "IDX_FILES",
    "MNIST_NPZ",
    "MNIST_SPLITS",
    "MNIST_WIDTH",
    "Dataset",
    "binarize",
    "binarize_split",
    "load_binarized_mnist",
    "load_dataset",
    "load_digits",
    "load_file",
    "load_mnist",
    "read_csv_table",
    "read_idx",
]

DATASETS = ("digits", "binarized-mnist", "mnist", "fashion-mnist")

DIGITS_NUM_TRAIN = 1500  # of scikit-learn's 1797 digits; the other 297 are the test set
DIGITS_THRESHOLD = 8  # a pixel (0..16) is 1 where it is >= 8, the middle of its range
DIGITS_LEVELS = 17  # pixel values 0..16
DEQUANTIZATION_SEED = 0  # the noise of the continuous digits is part of the dataset, the same in every run
FILE_SUFFIXES = (".npy", ".npz", ".csv")
MNIST_WIDTH = 784  # 28 * 28 pixels
MNIST_SPLITS = ("train", "valid", "test")
MNIST_NPZ = "binarized_mnist.npz"
MNIST_HINT = (
    "binarized-mnist needs {data_dir}, a directory holding binarized_mnist.npz "
    "or the binarized_mnist_{train,valid,test}.amat files"
)
IDX_DATASETS = ("mnist", "fashion-mnist")  # the same four file names and formats
IDX_FILES = {  # split: (images, labels), each found in the data directory plain or with the suffix .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# The IDX type code (third byte of the magic number): big-endian dtype and the format's name for it.
IDX_TYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}
IDX_IMAGE_SHAPE = (28, 28)
IDX_NUM_CLASSES = 10
GREY_LEVELS = 256  # pixel values 0..255 of the IDX images
GZIP_MAGIC = b"\x1f\x8b"
BINARIZATION_SEED = 0  # the fixed binarization of a grey-level test set, the same in every run


class Dataset(NamedTuple):
    """A dataset of flattened images (or a user's rows), split for training and evaluation."""

    name: str  # one of DATASETS, or the file name of a user's file
    train: np.ndarray  # shape=(N_train, D), float32
    test: np.ndarray  # shape=(N_test, D), float32
    valid: np.ndarray | None  # shape=(N_valid, D), float32, or None where there is no validation split
    train_labels: np.ndarray | None  # shape=(N_train,), int32, or None where there are no labels
    test_labels: np.ndarray | None  # shape=(N_test,), int32, or None where there are no labels
    image_shape: tuple[int, int] | None  # (height, width) of one image, with height * width = D
    binary: bool  # every value is 0 or 1
    grey_levels: bool = False  # values in [0, 1] that a Bernoulli model binarizes: `binarize`, `binarize_split`
    # Sequences (`lvmjax.time_series`): each split is its sequences' time steps, one after another, and
    # these are their lengths (summing to N_train and N_test); None for data whose rows are independent.
    train_lengths: np.ndarray | None = None
    test_lengths: np.ndarray | None = None
    test_follows_train: bool = False  # the test split is the continuation of the one training sequence
    # Text (`lvmjax.text`): the splits are documents x words count matrices (scipy.sparse CSR), whose columns
    # are these words; None for other data.
    vocabulary: tuple[str, ...] | None = None
    label_names: tuple[str, ...] | None = None  # what each label means, where the labels have names


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    continuous: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Loads the dataset called `name`, one of `DATASETS`, or a user's file.

    Args:
      name: ``"digits"`` (packaged with lvmjax), ``"binarized-mnist"``,
        ``"mnist"``, ``"fashion-mnist"``, or the path of a ``.npy``, ``.npz`` or
        ``.csv`` file (see `load_file`).
      data_dir: the directory that holds the files of binarized-mnist, mnist or
        fashion-mnist; unused otherwise.
      continuous: real values for a Gaussian model: the dequantized pixels
        instead of the binarized digits or the grey levels of mnist. A file is
        read as it is either way; binarized MNIST has no real-valued version.
      test_fraction: the share of a file's rows held out as the test set.
      seed: the seed of a file's random split.

    Returns:
      The `Dataset`.

    Raises:
      DataError: for an unknown name, or missing or malformed data.
    """
    if name == "digits":
        return load_digits(continuous=continuous)
    if name == "binarized-mnist":
        if continuous:
            raise DataError(
                "binarized-mnist has only the values 0 and 1, so it has no real-valued version for "
                "a Gaussian model; use a binary model (mob, vae) or real-valued data"
            )
        return load_binarized_mnist(data_dir)
    if name in IDX_DATASETS:
        return load_mnist(data_dir, name, continuous=continuous)
    if pathlib.Path(name).suffix.lower() in FILE_SUFFIXES:
        return load_file(name, test_fraction=test_fraction, seed=seed)
    known = ", ".join(repr(known_name) for known_name in DATASETS)
    raise DataError(
        f"unknown dataset {name!r}; the known datasets are {known}, or the path of a {', '.join(FILE_SUFFIXES)} file"
    )


def load_digits(continuous: bool = False) -> Dataset:
    """The UCI handwritten digits of scikit-learn, binarized (x_d = 1 where pixel_d >= 8) or dequantized.

    1797 images of 8x8 pixels with values 0..16 (scikit-learn's
    ``load_digits()``, in its order), read from the copy packaged with lvmjax.
    The first 1500 are the training set, the other 297 the test set; there is no
    validation split.

    With `continuous=True` each pixel is uniformly dequantized (Theis, van den
    Oord & Bethge 2016), x_d = (pixel_d + u_d) / 17 with u_d ~ U[0, 1), so that a
    density model of x has a finite likelihood: its log-density in nats minus
    64 log 17 lower-bounds the log-probability of the integer image. The noise
    comes from a fixed seed, so every run sees the same data.

    Returns:
      A `Dataset` with train (1500, 64), test (297, 64), labels 0..9 and
      image_shape (8, 8); values 0 and 1, or in [0, 1) when continuous.
    """
    resource = importlib.resources.files("lvmjax") / "datasets" / "digits.npz"
    try:
        with resource.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            images = archive["images"]
            labels = archive["labels"]
    except Exception as error:  # a damaged file; see _read_npz
        raise DataError(
            f"the digits data packaged with lvmjax could not be read ({_one_line(error)}); "
            "reinstall lvmjax, whose package data must include lvmjax/datasets/digits.npz"
        ) from error
    if images.shape != (1797, 64) or labels.shape != (1797,):
        raise DataError(
            f"the digits data packaged with lvmjax has images of shape {images.shape} and labels of shape "
            f"{labels.shape}, expected (1797, 64) and (1797,); reinstall lvmjax"
        )
    if continuous:
        values = _dequantize(images, DIGITS_LEVELS, np.random.default_rng(DEQUANTIZATION_SEED))
    else:
        values = (images >= DIGITS_THRESHOLD).astype(np.float32)
    labels = labels.astype(np.int32)
    return Dataset(
        name="digits",
        train=values[:DIGITS_NUM_TRAIN],
        test=values[DIGITS_NUM_TRAIN:],
        valid=None,
        train_labels=labels[:DIGITS_NUM_TRAIN],
        test_labels=labels[DIGITS_NUM_TRAIN:],
        image_shape=(8, 8),
        binary=not continuous,
    )


def load_binarized_mnist(data_dir: str | os.PathLike | None) -> Dataset:
    """The statically binarized MNIST of Larochelle & Murray (2011), read from `data_dir`.

    `data_dir` holds either ``binarized_mnist.npz``, with arrays ``train``
    (50000, 784), ``valid`` (10000, 784) and ``test`` (10000, 784) of 0/1
    values, or the original text files ``binarized_mnist_train.amat``,
    ``binarized_mnist_valid.amat`` and ``binarized_mnist_test.amat``, one image
    per line as 784 space-separated 0/1 values. Where both are present the npz
    is read. Only the widths and values are checked, not the number of images.

    Args:
      data_dir: the directory holding the data.

    Returns:
      A `Dataset` with train, valid and test of 784 columns, no labels and
      image_shape (28, 28).

    Raises:
      DataError: if `data_dir` is None, missing or holds neither format, or a
        file is unreadable, lacks a split, has the wrong width, is empty or has
        values other than 0 and 1.
    """
    directory = _data_directory(data_dir, MNIST_HINT)
    npz_path = directory / MNIST_NPZ
    amat_paths = {split: directory / f"binarized_mnist_{split}.amat" for split in MNIST_SPLITS}
    if npz_path.is_file():
        arrays = _read_npz(npz_path, MNIST_SPLITS)
        described = {split: f"array {split!r} in {npz_path}" for split in MNIST_SPLITS}
    elif all(path.is_file() for path in amat_paths.values()):
        arrays = {split: _read_amat(path, MNIST_WIDTH) for split, path in amat_paths.items()}
        described = {split: str(path) for split, path in amat_paths.items()}
    else:
        found = [path.name for path in amat_paths.values() if path.is_file()]
        found_text = f" (it has only {', '.join(found)})" if found else ""
        raise DataError(
            f"the data directory {directory} holds neither {MNIST_NPZ} nor all three "
            f"binarized_mnist_{{train,valid,test}}.amat files{found_text}; {MNIST_HINT}"
        )
    images = {split: _as_binary_images(arrays[split], described[split], MNIST_WIDTH) for split in MNIST_SPLITS}
    return Dataset(
        name="binarized-mnist",
        train=images["train"],
        test=images["test"],
        valid=images["valid"],
        train_labels=None,
        test_labels=None,
        image_shape=(28, 28),
        binary=True,
    )


def load_mnist(data_dir: str | os.PathLike | None, name: str = "mnist", *, continuous: bool = False) -> Dataset:
    """MNIST or Fashion-MNIST, read from the four IDX files of its distribution in `data_dir`.

    `data_dir` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (`IDX_FILES`),
    each as distributed, gzipped with the suffix ``.gz``, or decompressed
    without it; where both are present the plain file is read. Both datasets
    use these names, so each needs a directory of its own. The images are
    unsigned bytes of shape (N, 28, 28) and the labels the classes 0..9; the
    number of images is not checked, so a subset in the same format loads too.

    The values are the grey levels x_d = pixel_d / 255 ∈ [0, 1], for a
    Bernoulli model to binarize (`binarize`, `binarize_split`). With
    `continuous=True` each pixel is instead uniformly dequantized as in
    `load_digits`, x_d = (pixel_d + u_d) / 256 with u_d ~ U[0, 1) from a fixed
    seed (training set first, then the test set), for a Gaussian model, whose
    density on the 256 levels themselves would be unbounded.

    Args:
      data_dir: the directory holding the files.
      name: ``"mnist"`` or ``"fashion-mnist"``, for the messages and the
        dataset's name; the files are read the same way.
      continuous: dequantized pixels instead of grey levels.

    Returns:
      A `Dataset` with train (60000, 784) and test (10000, 784) float32, no
      validation split, int32 labels 0..9, image_shape (28, 28), ``binary``
      False and ``grey_levels`` True (False when continuous).

    Raises:
      DataError: if `data_dir` is None, missing or lacks a file, or a file is
        unreadable, not gzip or IDX data, truncated, of the wrong type or shape,
        or its images and labels differ in number.
    """
    if name not in IDX_DATASETS:
        raise DataError(f"unknown IDX dataset {name!r}; the IDX datasets are {', '.join(IDX_DATASETS)}")
    hint = _idx_hint(name)
    directory = _data_directory(data_dir, hint)
    paths = {base: _find_idx_file(directory, base) for pair in IDX_FILES.values() for base in pair}
    missing = [base for base, path in paths.items() if path is None]
    if missing:
        found = [path.name for path in paths.values() if path is not None]
        found_text = f" (it has only {', '.join(found)})" if found else ""
        raise DataError(f"the data directory {directory} lacks {', '.join(missing)}, plain or .gz{found_text}; {hint}")
    rng = np.random.default_rng(DEQUANTIZATION_SEED)  # drawn from only if continuous
    values, labels = {}, {}
    for split, (images_base, labels_base) in IDX_FILES.items():
        images_path, labels_path = paths[images_base], paths[labels_base]
        assert images_path is not None and labels_path is not None  # the missing ones raised above
        pixels = _as_idx_images(read_idx(images_path), images_path, name)
        labels[split] = _as_idx_labels(read_idx(labels_path), labels_path, name)
        if labels[split].shape[0] != pixels.shape[0]:
            raise DataError(
                f"{labels_path} has {labels[split].shape[0]} labels but {images_path} has "
                f"{pixels.shape[0]} images; they must be the same {split} split of {name}, so download "
                "both files again"
            )
        pixels = pixels.reshape(pixels.shape[0], -1)
        if continuous:
            values[split] = _dequantize(pixels, GREY_LEVELS, rng)
        else:
            values[split] = pixels.astype(np.float32) / np.float32(GREY_LEVELS - 1)
    return Dataset(
        name=name,
        train=values["train"],
        test=values["test"],
        valid=None,
        train_labels=labels["train"],
        test_labels=labels["test"],
        image_shape=IDX_IMAGE_SHAPE,
        binary=False,
        grey_levels=not continuous,
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file at `path` (LeCun's format of the MNIST files), gzipped or not.

    An IDX file is a magic number of four bytes, 0x00 0x00, the type code of
    the values (`IDX_TYPES`) and the number of dimensions n; then n big-endian
    uint32 sizes; then the values, big-endian, in row-major order, and nothing
    after them. A file whose first bytes are gzip's (0x1f 0x8b) is
    decompressed first, whatever its name.

    Args:
      path: the file.

    Returns:
      The array, of the header's shape and type, in native byte order.

    Raises:
      DataError: if the file is unreadable, a damaged gzip stream, not IDX
        data, of an unknown type code, truncated, or longer than its header says.
    """
    path = pathlib.Path(path)
    again = "download it again"
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DataError(f"could not read {path} ({_one_line(error)})") from error
    if content[:2] == GZIP_MAGIC:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
            raise DataError(
                f"could not decompress {path} ({_one_line(error)}); the gzip file is truncated or corrupted, so {again}"
            ) from error
    if len(content) < 4:
        raise DataError(
            f"{path} is truncated: it holds {len(content)} bytes, fewer than the 4 of an IDX file's "
            f"magic number; {again}"
        )
    if content[:2] != b"\x00\x00":
        looks_like = " (it looks like a web page: was the download refused?)" if content.lstrip()[:1] == b"<" else ""
        raise DataError(
            f"{path} is neither an IDX file nor gzipped: it starts with the bytes 0x{content[:2].hex()}, "
            f"where an IDX file starts with 0x0000 and a gzip file with 0x1f8b{looks_like}; {again}"
        )
    code, num_dims = content[2], content[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{known_code:02x} ({type_name})" for known_code, (_, type_name) in IDX_TYPES.items())
        raise DataError(
            f"{path} has the IDX type code 0x{code:02x}, not one of {known}; the file is corrupted, so {again}"
        )
    header_size = 4 + 4 * num_dims
    if len(content) < header_size:
        raise DataError(
            f"{path} is truncated: its header has {num_dims} dimensions, {header_size} bytes, but the "
            f"file holds {len(content)}; {again}"
        )
    shape = tuple(int(size) for size in np.frombuffer(content, ">u4", count=num_dims, offset=4))
    dtype, type_name = IDX_TYPES[code]
    num_values = math.prod(shape)
    expected, available = num_values * dtype.itemsize, len(content) - header_size
    described = f"a {'x'.join(map(str, shape)) or 'scalar'} array of {type_name}s, {expected} bytes after the header"
    if available < expected:
        raise DataError(f"{path} is truncated: its header promises {described}, but it holds {available}; {again}")
    if available > expected:
        raise DataError(
            f"{path} holds {available - expected} bytes more than its header promises ({described}); "
            f"the file is corrupted, so {again}"
        )
    values = np.frombuffer(content, dtype, count=num_values, offset=header_size)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def binarize(key: jax.Array, images: jax.Array | np.ndarray) -> jax.Array:
    """Dynamic binarization: x_d ~ Bernoulli(p_d), each pixel independently, E[x_d] = p_d.

    The grey level p_d ∈ [0, 1] of each pixel is the probability that it is on:
    x_d = 1[u_d < p_d] with u_d ~ U[0, 1). Drawn afresh for every minibatch
    it turns grey-level MNIST into binary data for a Bernoulli likelihood
    p(x | z; θ), as in Burda, Grosse & Salakhutdinov (2016), "Importance
    Weighted Autoencoders", section 5; the test set gets one fixed draw
    (`binarize_split`). Pure and traceable: call it inside the jitted step.

    Args:
      key: the PRNG key of this draw.
      images: the probabilities p, floating, of any shape (one image (D,) or a
        minibatch (B, D)).

    Returns:
      x, of the shape and dtype of `images`, every value 0 or 1.
    """
    images = jnp.asarray(images)
    return jax.random.bernoulli(key, images).astype(images.dtype)


def binarize_split(images: np.ndarray, seed: int = BINARIZATION_SEED) -> np.ndarray:
    """One fixed binarization x ~ Bernoulli(images) of a whole split, the same for every call with `seed`.

    For evaluation: binarizing the test set once, from a fixed seed, makes the
    test metrics of grey-level data reproducible and comparable between runs,
    while training draws afresh with `binarize`.

    Args:
      images: grey levels in [0, 1], shape (N, D), floating (a `Dataset`'s split).
      seed: the seed of the draw.

    Returns:
      A numpy array of the shape and dtype of `images`, every value 0 or 1.
    """
    return np.asarray(binarize(jax.random.key(seed), images))


def load_file(path: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A user's data: one datapoint per row of numbers, in a ``.npy``, ``.npz`` or ``.csv`` file.

    - ``.npy``: one 2-D array (N, D).
    - ``.npz``: either the arrays ``train`` and ``test`` (and optionally
      ``valid``, ``train_labels``, ``test_labels``), used as they are, or exactly
      one 2-D array, split like the other formats.
    - ``.csv``: comma-separated numbers, one row per line; a first line that is
      not numbers is taken as a header and skipped.

    A single array is split at random: round(N · test_fraction) rows, chosen by
    a permutation from `seed`, are the test set and the rest the training set.

    Args:
      path: the file.
      test_fraction: the held-out share, strictly between 0 and 1.
      seed: the seed of the split.

    Returns:
      A `Dataset` named after the file, float32, without image shape; `binary`
      says whether every value is 0 or 1.

    Raises:
      DataError: for a missing, unreadable or empty file, an unknown suffix, a
        shape other than (N, D), values that are not finite real numbers (or
        beyond float32's range), or a split that leaves either side empty.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"{path} has the suffix {suffix or '(none)'!r}; data files must be {', '.join(FILE_SUFFIXES)}")
    if not path.is_file():
        raise DataError(
            f"the data file {path} does not exist" if not path.exists() else f"the data file {path} is not a file"
        )
    if not 0 < test_fraction < 1:
        raise DataError(f"test-fraction must be strictly between 0 and 1, got {test_fraction}")
    if suffix == ".npz":
        arrays = _read_user_npz(path)
    elif suffix == ".npy":
        arrays = {"data": _read_npy(path)}
    else:
        arrays = {"data": _read_csv(path)}
    if "data" in arrays:
        data = _as_data_matrix(arrays["data"], str(path))
        num_test = round(data.shape[0] * test_fraction)
        if not 1 <= num_test <= data.shape[0] - 1:
            raise DataError(
                f"{path} has {data.shape[0]} rows, too few to hold out test-fraction {test_fraction} "
                "and keep both splits non-empty"
            )
        order = np.random.default_rng(seed).permutation(data.shape[0])
        train, test = data[order[num_test:]], data[order[:num_test]]
        valid = train_labels = test_labels = None
    else:
        train = _as_data_matrix(arrays["train"], f"array 'train' in {path}")
        test = _as_data_matrix(arrays["test"], f"array 'test' in {path}")
        valid = _as_data_matrix(arrays["valid"], f"array 'valid' in {path}") if "valid" in arrays else None
        for name, split in (("test", test), ("valid", valid)):
            if split is not None and split.shape[1] != train.shape[1]:
                raise DataError(
                    f"array {name!r} in {path} has {split.shape[1]} columns but 'train' has "
                    f"{train.shape[1]}; every split needs the same columns"
                )
        train_labels = _as_labels(arrays.get("train_labels"), train, f"array 'train_labels' in {path}")
        test_labels = _as_labels(arrays.get("test_labels"), test, f"array 'test_labels' in {path}")
    splits = [split for split in (train, test, valid) if split is not None]
    binary = all(bool(np.all((split == 0) | (split == 1))) for split in splits)
    return Dataset(
        name=path.name,
        train=train,
        test=test,
        valid=valid,
        train_labels=train_labels,
        test_labels=test_labels,
        image_shape=None,
        binary=binary,
    )


def _read_npy(path: pathlib.Path) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            array = np.load(file, allow_pickle=False)
    except Exception as error:  # truncated, corrupted, pickled objects, ...: numpy raises many types
        raise DataError(
            f"could not read {path} as a .npy array ({_one_line(error)}); save it with "
            "np.save(path, array) of a 2-D numeric array"
        ) from error
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} is not a .npy array; save it with np.save(path, array)")
    return array


def _read_user_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    """{"train", "test", ...} when the archive has both, else {"data": its one array}."""
    hint = "save it with np.savez(path, train=..., test=...) or np.savez(path, data)"
    try:
        file = open(path, "rb")
    except OSError as error:
        raise DataError(f"could not read {path} ({_one_line(error)})") from error
    with file:
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as error:  # see _read_npz
            raise DataError(f"could not read {path} as an npz archive ({_one_line(error)}); {hint}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single .npy array, not an npz archive; rename it to .npy or {hint}")
        with archive:
            names = archive.files
            wanted: list[str]
            if "train" in names and "test" in names:
                wanted = [name for name in ("train", "test", "valid", "train_labels", "test_labels") if name in names]
            elif len(names) == 1:
                wanted = names
            else:
                raise DataError(
                    f"{path} has the arrays {', '.join(names) or '(none)'}; it needs both 'train' and "
                    f"'test', or exactly one array to split; {hint}"
                )
            try:
                arrays = {name: archive[name] for name in wanted}
            except Exception as error:  # a damaged member
                raise DataError(
                    f"could not read {path} ({_one_line(error)}); the file may be truncated or corrupted"
                ) from error
    if len(wanted) == 1 and wanted[0] not in ("train", "test"):
        return {"data": arrays[wanted[0]]}
    return arrays


def _read_csv(path: pathlib.Path) -> np.ndarray:
    return read_csv_table(path)[1]


def read_csv_table(path: pathlib.Path) -> tuple[list[str] | None, np.ndarray]:
    """(the header's column names, or None where the first line is numbers; the rows of numbers, float64)."""
    try:
        # utf-8-sig: a byte-order mark (as spreadsheets write) is not part of the first value.
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"could not read {path} as text ({_one_line(error)})") from error
    rows = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    header = None
    if rows and not _is_numeric_row(rows[0][1]):
        header = [field.strip().strip('"') for field in rows[0][1].split(",")]
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path} has no rows of numbers; write one datapoint per line, values separated by commas")
    width = len(rows[0][1].split(","))
    values = []
    for number, line in rows:
        fields = line.split(",")
        if len(fields) != width:
            raise DataError(f"{path} line {number}: expected {width} comma-separated values, got {len(fields)}")
        try:
            values.append([float(field) for field in fields])
        except ValueError:
            bad = next(field for field in fields if not _is_number(field))
            raise DataError(f"{path} line {number}: {bad.strip()!r} is not a number") from None
    return header, np.array(values, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_numeric_row(line: str) -> bool:
    return all(_is_number(field) for field in line.split(","))


def _as_data_matrix(array: np.ndarray, description: str) -> np.ndarray:
    """`array` as float32 after checking that it is a non-empty (N, D) array of finite real numbers
    within float32's range (beyond it a value would become inf)."""
    if np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(
            f"{description} has the complex dtype {array.dtype}; expected real numbers, so keep "
            "the real part (or the modulus) and save that"
        )
    if not is_real_dtype(array.dtype):
        raise DataError(f"{description} has dtype {array.dtype}; expected numbers")
    if array.ndim != 2:
        raise DataError(f"{description} has shape {array.shape}; expected a 2-D array (N, D), one datapoint per row")
    if array.size == 0:
        raise DataError(f"{description} is empty (shape {array.shape}); expected at least one row and one column")
    finite = np.isfinite(array)
    if not np.all(finite):
        row, column = np.argwhere(~finite)[0]
        raise DataError(
            f"{description} has {int(np.sum(~finite))} values that are NaN or infinite (the first in "
            f"row {row}, column {column}); remove or impute them first"
        )
    too_large = np.abs(array) > np.finfo(np.float32).max
    if np.any(too_large):
        row, column = np.argwhere(too_large)[0]
        raise DataError(
            f"{description} has {int(np.sum(too_large))} values beyond float32's largest "
            f"magnitude {np.finfo(np.float32).max:.3g} (the first, {array[row, column]:.3g}, in row "
            f"{row}, column {column}), which would become infinite; rescale the data first"
        )
    return array.astype(np.float32)


def _as_labels(labels: np.ndarray | None, data: np.ndarray, description: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{description} has shape {labels.shape} and dtype {labels.dtype}; expected "
            f"{data.shape[0]} integer labels, one per row"
        )
    return labels.astype(np.int32)


def _one_line(error: BaseException) -> str:
    """`error` as 'TypeName: message' on one line."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _read_npz(path: pathlib.Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `names` of the npz archive at `path`."""
    hint = "the file may be truncated or corrupted; download or convert it again"
    try:
        file = open(path, "rb")  # not by np.load, which leaves its file open when the archive is damaged
    except OSError as error:
        raise DataError(f"could not read {path} ({_one_line(error)})") from error
    with file:
        # A damaged file fails in whichever layer notices first (zipfile, zlib, numpy's header
        # parser, tokenize, ...), each with an exception of its own, so any exception here means that.
        try:
            archive = np.load(file, allow_pickle=False)
        except Exception as error:
            raise DataError(f"could not read {path} as an npz archive ({_one_line(error)}); {hint}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single array, not an npz archive of the arrays {', '.join(names)}; "
                "save them with np.savez(path, train=..., valid=..., test=...)"
            )
        with archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise DataError(
                    f"{path} has no array {missing[0]!r} (it has {', '.join(archive.files) or 'none'}); "
                    f"it needs the arrays {', '.join(names)}, e.g. np.savez(path, train=..., "
                    "valid=..., test=...)"
                )
            try:
                return {name: archive[name] for name in names}
            except Exception as error:  # a damaged file, as above
                raise DataError(f"could not read {path} ({_one_line(error)}); {hint}") from error


def _read_amat(path: pathlib.Path, width: int) -> np.ndarray:
    """The (N, width) array of a text file holding one row of `width` numbers per line."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DataError(f"could not read {path} ({_one_line(error)})") from error
    if not content.strip():
        raise DataError(
            f"{path} is empty; it must hold one image per line, {width} values separated by spaces, "
            "so download or convert it again"
        )
    parsed = _parse_binary_text(content)
    if parsed is None:
        parsed = _parse_any_text(content, path)
    values, counts, line_numbers = parsed
    wrong = np.flatnonzero(counts != width)
    if wrong.size:
        first = wrong[0]
        raise DataError(
            f"{path} line {line_numbers[first]}: expected {width} columns, got {counts[first]}; "
            "each line must hold one image, so the file may be truncated or corrupted"
        )
    return values.reshape(-1, width)


def _parse_binary_text(content: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Parses non-empty text whose every number is the single character 0 or 1, at the speed of numpy.

    Returns:
      The values (uint8, all lines concatenated), the number of values on each
      line that has any, and those lines' numbers (from 1); or None where the
      text holds anything else, for `_parse_any_text`.
    """
    characters = np.frombuffer(content, np.uint8)
    is_digit = characters - np.uint8(ord("0")) < 2  # wraps around below "0"
    is_separator = (characters == ord(" ")) | (characters == ord("\n")) | (characters == ord("\r"))
    is_separator |= characters == ord("\t")
    if not np.all(is_digit | is_separator) or np.any(is_digit[1:] & is_digit[:-1]):
        return None
    values = characters[is_digit] - np.uint8(ord("0"))
    line_starts = np.concatenate(([0], np.flatnonzero(characters == ord("\n")) + 1))
    line_starts = line_starts[line_starts < characters.size]
    counts = np.add.reduceat(is_digit.view(np.uint8), line_starts, dtype=np.int64)
    has_values = counts > 0
    return values, counts[has_values], np.flatnonzero(has_values) + 1


def _parse_any_text(content: bytes, path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parses whitespace-separated numbers of any format, line by line; see `_parse_binary_text`."""
    try:
        lines = content.decode("ascii").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not a text file of numbers ({_one_line(error)}); download or convert it again"
        ) from error
    tokens, counts, line_numbers = [], [], []
    for line_number, line in enumerate(lines, start=1):
        row = line.split()
        if row:
            tokens.extend(row)
            counts.append(len(row))
            line_numbers.append(line_number)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError as error:
        raise DataError(
            f"{path} holds text that is not a number ({_one_line(error)}); "
            "each line must hold numbers separated by spaces"
        ) from error
    return values, np.array(counts, dtype=np.int64), np.array(line_numbers, dtype=np.int64)


def _as_binary_images(array: np.ndarray, description: str, width: int) -> np.ndarray:
    """`array` as float32 after checking that it is (N, width), N >= 1, of 0/1 values."""
    if not is_real_dtype(array.dtype):
        raise DataError(f"{description} has dtype {array.dtype}; expected numbers 0 and 1")
    if array.size == 0:
        raise DataError(f"{description} is empty (shape {array.shape}); expected at least one image of {width} values")
    if array.ndim != 2:
        raise DataError(
            f"{description} has shape {array.shape}; expected a 2-D array (N, {width}), one flattened image per row"
        )
    if array.shape[1] != width:
        raise DataError(
            f"{description} has shape {array.shape}: expected {width} columns, got {array.shape[1]}; "
            "each row must be one flattened image"
        )
    check_binary(array, description)
    return array.astype(np.float32)


def _data_directory(data_dir: str | os.PathLike | None, hint: str) -> pathlib.Path:
    """`data_dir` as a path, after checking that it names a directory; `hint` ends every message."""
    if data_dir is None:
        raise DataError(hint)
    directory = pathlib.Path(data_dir)
    if not directory.exists():
        raise DataError(f"the data directory {directory} does not exist; {hint}")
    if not directory.is_dir():
        raise DataError(f"the data directory {directory} is a file, not a directory; {hint}")
    return directory


def _dequantize(pixels: np.ndarray, levels: int, rng: np.random.Generator) -> np.ndarray:
    """(pixels + u) / levels with u ~ U[0, 1) from `rng`, as float32 (Theis, van den Oord & Bethge 2016).

    Every value stays inside its pixel's bin [pixel / levels, (pixel + 1) / levels).
    """
    values = rng.uniform(size=pixels.shape)
    values += pixels  # in place: MNIST's training set is 376 MB of float64
    values /= levels
    dequantized = values.astype(np.float32)
    # Rounding to float32 carries a few values up onto the next bin's lower edge; step those back inside.
    np.multiply(dequantized, levels, out=values)
    values -= pixels
    over = values >= 1
    dequantized[over] = np.nextafter(dequantized[over], np.float32(0))
    return dequantized


def _idx_hint(name: str) -> str:
    return (
        f"{name} needs {{data_dir}}, a directory holding its four IDX files "
        f"{', '.join(base for pair in IDX_FILES.values() for base in pair)}, each plain or gzipped (.gz)"
    )


def _find_idx_file(directory: pathlib.Path, base: str) -> pathlib.Path | None:
    for path in (directory / base, directory / f"{base}.gz"):
        if path.is_file():
            return path
    return None


def _as_idx_images(array: np.ndarray, path: pathlib.Path, name: str) -> np.ndarray:
    """`array` after checking that it is unsigned bytes of shape (N, 28, 28), N >= 1."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != IDX_IMAGE_SHAPE or not array.shape[0]:
        raise DataError(
            f"{path} holds {array.dtype} values of shape {array.shape}, but the images of {name} are "
            f"unsigned bytes of shape (N, {IDX_IMAGE_SHAPE[0]}, {IDX_IMAGE_SHAPE[1]}) with N >= 1; "
            "check that it is the right file, or download it again"
        )
    return array


def _as_idx_labels(array: np.ndarray, path: pathlib.Path, name: str) -> np.ndarray:
    """`array` as int32 after checking that it is unsigned bytes of shape (N,) with values 0..9."""
    if array.dtype != np.uint8 or array.ndim != 1:
        raise DataError(
            f"{path} holds {array.dtype} values of shape {array.shape}, but the labels of {name} are "
            "unsigned bytes of shape (N,); check that it is the right file, or download it again"
        )
    if array.size and array.max() >= IDX_NUM_CLASSES:
        raise DataError(
            f"{path} has the label {array.max()}, but the labels of {name} are the classes "
            f"0..{IDX_NUM_CLASSES - 1}; the file is corrupted, so download it again"
        )
    return array.astype(np.int32)

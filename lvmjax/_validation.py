"""Argument checks shared by the public functions.

Every check runs in Python while a function is traced, so a bad shape or a bad
sample count fails with a named error before anything is compiled. Values
(NaN, inf) can only be checked when they are concrete: under `jax.jit` or
`jax.vmap` they are tracers, and the check is skipped.
"""

from __future__ import annotations

import operator
from typing import Any

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from lvmjax._discrete import FINITE_FAMILIES
from lvmjax.errors import ArgumentError, ArgumentTypeError, DataError

__all__ = [
    "check_binary",
    "check_chunk_size",
    "check_data_matrix",
    "check_event_shape",
    "check_finite",
    "check_num_components",
    "check_num_samples",
    "check_real_array",
    "check_single_distribution",
    "is_discrete",
    "is_real_dtype",
]


def check_num_samples(num_samples: Any, name: str = "num_samples") -> int:
    """Returns `num_samples` as a Python int >= 1, or raises."""
    if isinstance(num_samples, jax.core.Tracer):
        raise ArgumentTypeError(
            f"{name} must be a static Python int, but it is traced; "
            f"mark it static, e.g. jax.jit(fn, static_argnames='{name}')."
        )
    if isinstance(num_samples, bool):
        raise ArgumentTypeError(f"{name} must be an int, got the bool {num_samples!r}.")
    try:
        value = operator.index(num_samples)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be an int, got {type(num_samples).__name__} {num_samples!r}.") from None
    if value < 1:
        raise ArgumentError(f"{name} must be at least 1, got {value}.")
    return value


def check_chunk_size(chunk_size: Any, num_samples: int) -> int | None:
    """Returns a chunk size that splits `num_samples` into equal chunks, or raises."""
    if chunk_size is None:
        return None
    chunk_size = check_num_samples(chunk_size, name="chunk_size")
    if chunk_size > num_samples:
        raise ArgumentError(
            f"chunk_size={chunk_size} is larger than num_samples={num_samples}; "
            f"use chunk_size=None (one chunk) or a divisor of {num_samples}."
        )
    if num_samples % chunk_size:
        divisors = [d for d in range(1, num_samples + 1) if num_samples % d == 0]
        below = max(d for d in divisors if d < chunk_size)
        above = min(d for d in divisors if d > chunk_size)
        raise ArgumentError(
            f"chunk_size={chunk_size} does not divide num_samples={num_samples} into "
            f"equal chunks; the nearest divisors are {below} and {above}."
        )
    return chunk_size


def check_single_distribution(dist: Any, name: str) -> None:
    """Checks that `dist` is one distrax distribution with an empty batch shape."""
    if not isinstance(dist, distrax.Distribution):
        raise ArgumentTypeError(f"{name} must be a distrax.Distribution, got {type(dist).__name__}.")
    if dist.batch_shape != ():
        raise ArgumentError(
            f"{name} must be ONE distribution over one datapoint's variable, but it has "
            f"batch_shape {tuple(dist.batch_shape)} (event_shape {tuple(dist.event_shape)}). "
            "For independent dimensions use distrax.MultivariateNormalDiag or "
            "distrax.Independent(dist, reinterpreted_batch_ndims=...); for many "
            "datapoints, jax.vmap the function."
        )


def is_real_dtype(dtype: Any) -> bool:
    """Whether `dtype` holds real numbers: bool, integer or floating (not complex, strings or objects)."""
    return dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)


def check_real_array(value: Any, name: str) -> None:
    """Checks that `value` is an array (or a Python number) of real numbers: bool, integer or floating.

    Lists, strings and None are refused (JAX functions take arrays: `jnp.asarray`
    them first), and so are strings, objects and complex numbers inside an array.
    """
    if not isinstance(value, (jax.Array, np.ndarray, np.generic, bool, int, float)):
        raise ArgumentTypeError(f"{name} must be an array, got {type(value).__name__}; convert it with jnp.asarray.")
    dtype = value.dtype if hasattr(value, "dtype") else np.result_type(value)
    if not is_real_dtype(dtype):
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {dtype}.")


def check_binary(array: Any, name: str) -> None:
    """Raises a `DataError` unless every value of `array` is 0 or 1 (NaN is neither).

    Args:
      array: numbers of any shape.
      name: how the message names the array, e.g. ``"array 'train' in data.npz"``.
    """
    array = np.asarray(array)
    not_binary = (array != 0) & (array != 1)
    count = int(np.count_nonzero(not_binary))
    if count:
        example = array[not_binary].flat[0].item()
        raise DataError(
            f"{name} has {count} values that are not 0 or 1 (for example {example!r}); "
            "a Bernoulli likelihood needs binary data, so binarize it first (e.g. x >= 0.5)"
        )


def check_event_shape(value: jax.Array, dist: distrax.Distribution, name: str, dist_name: str) -> None:
    """Checks that `value` is one event of `dist`: real numbers of its event shape, finite where concrete.

    A batch of events is named as one, with a hint to `jax.vmap`.
    """
    check_real_array(value, name)
    shape = tuple(jnp.shape(value))
    event_shape = tuple(dist.event_shape)
    if shape != event_shape:
        hint = ""
        if len(shape) == len(event_shape) + 1 and shape[1:] == event_shape:
            hint = (
                f" It looks like a batch of {shape[0]}; these functions take one "
                "datapoint: use jax.vmap over the batch."
            )
        raise ArgumentError(f"{name} has shape {shape}, but {dist_name} has event_shape {event_shape}.{hint}")
    check_finite(value, name)


def check_finite(tree: Any, name: str) -> None:
    """Raises if a concrete floating-point leaf of `tree` holds NaN or inf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.core.Tracer):
            continue
        if not isinstance(leaf, (jax.Array, np.ndarray, float)):
            continue
        array = np.asarray(leaf)
        if not np.issubdtype(array.dtype, np.inexact):
            continue
        if not np.all(np.isfinite(array)):
            where = jax.tree_util.keystr(path)
            raise ArgumentError(f"{name}{where} contains non-finite values (NaN or inf).")


def check_data_matrix(data: Any, min_rows: int = 1) -> jax.Array:
    """`data` as a floating-point (N, D) array of real numbers with N >= min_rows and D >= 1, finite where concrete.

    The shared check of every function that fits a model to a dataset (or
    scores one): a list of rows is converted; strings, objects and complex
    numbers are a TypeError.
    """
    if not isinstance(data, (jax.Array, np.ndarray)):
        data = np.asarray(data)  # a list of rows
    check_real_array(data, "data")
    shape = tuple(jnp.shape(data))
    if len(shape) != 2:
        raise ArgumentError(f"data must be 2-D (N datapoints, D dimensions), got shape {shape}.")
    if 0 in shape:
        raise ArgumentError(f"data is empty (shape {shape}); it needs at least one datapoint and one column.")
    if shape[0] < min_rows:
        raise ArgumentError(f"fitting needs at least {min_rows} datapoints, but data has N={shape[0]}.")
    check_finite(data, "data")
    data = jnp.asarray(data)
    if not jnp.issubdtype(data.dtype, jnp.floating):
        data = data.astype(jnp.result_type(float))
    return data


def check_num_components(num_components: Any, num_data: int) -> int:
    """Returns K as an int between 1 and the number of datapoints, or raises."""
    if isinstance(num_components, bool) or not isinstance(num_components, (int, np.integer)):
        raise ArgumentTypeError(f"num_components must be an int, got {type(num_components).__name__}.")
    if not 1 <= num_components <= num_data:
        raise ArgumentError(
            f"num_components must be between 1 and the number of datapoints ({num_data}), got {num_components}."
        )
    return int(num_components)


def is_discrete(dist: distrax.Distribution) -> bool:
    """Whether `dist` draws discrete latents, which cannot be reparameterized.

    True for integer or boolean samples, and for the discrete distrax families
    whatever dtype their samples are given (a Bernoulli may draw 0.0 and 1.0).
    """
    while isinstance(dist, distrax.Independent):
        dist = dist.distribution
    return isinstance(dist, FINITE_FAMILIES) or not jnp.issubdtype(dist.dtype, jnp.inexact)

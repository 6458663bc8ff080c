"""Evaluation in batches: the test data on the host, one batch at a time on the device."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EVALUATION_BATCH", "chunk_size", "in_batches"]

EVALUATION_BATCH = 1000  # test datapoints per compiled call of an evaluation


def in_batches(evaluate_batch: Callable, key, test: np.ndarray, progress: Callable[[int, int], None] | None):
    """`evaluate_batch(key_b, batch)` over equal batches of at most EVALUATION_BATCH rows (the last
    padded with copies of its first row, whose results are dropped), concatenated along the rows.

    Batch b draws with the key fold_in(key, b). The test data stays on the host and one
    batch at a time goes to the device, so the device memory is that of one batch (and,
    through the chunked estimators, independent of K). `progress(done, total)` before the
    first batch and after each.
    """
    num_test = test.shape[0]
    num_batches = -(-num_test // EVALUATION_BATCH)
    size = -(-num_test // num_batches)
    results = []
    if progress is not None:
        progress(0, num_batches)
    for index in range(num_batches):
        batch = test[index * size : (index + 1) * size]
        padding = size - batch.shape[0]
        if padding:
            batch = np.concatenate([batch, np.broadcast_to(batch[:1], (padding, batch.shape[1]))])
        result = evaluate_batch(jax.random.fold_in(key, index), jnp.asarray(batch))
        results.append(jax.device_get(jax.tree.map(lambda leaf, keep=size - padding: leaf[:keep], result)))
        if progress is not None:
            jax.block_until_ready(results[-1])
            progress(index + 1, num_batches)
    return jax.tree.map(lambda *leaves: np.concatenate(leaves), *results)


def chunk_size(num_samples: int) -> int:
    """The largest divisor of num_samples that is at most 500: the K samples drawn that many at a time."""
    return max(d for d in range(1, min(num_samples, 500) + 1) if num_samples % d == 0)

"""What every benchmark shares: the machine's name, timing, the matmul peak, and one result row."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

DEFAULT_DATA_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"
"""Where the benchmarks look for binarized_mnist.npz unless given `--data-dir`: the `shared/data` folder
beside the repository (the package itself never assumes a data path)."""


def machine() -> str:
    """The CPU model and core count (or the accelerator) this run used."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{jax.device_count()} x {device.device_kind}"
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores (CPU)"


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of `repeats` further calls); `fn` must block until done.

    The first call of a jitted function traces and compiles it, so the first figure is the
    time to the first result and the second the steady state.
    """
    begin = time.perf_counter()
    fn()
    first = time.perf_counter() - begin
    times = []
    for _ in range(max(1, repeats)):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return first, statistics.median(times)


def matmul_peak(size: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """The float32 FLOP/s of XLA's matrix multiply of two (size, size) matrices on this device: the
    median of `repeats` products, 2 size³ floating-point operations each, after a warm-up."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype)
    product = jax.jit(jnp.matmul)
    _, seconds = timed(lambda: product(a, b).block_until_ready(), repeats)
    return 2 * size**3 / seconds


@dataclasses.dataclass
class Row:
    """One line of the table: lvmjax against one peer on one workload.

    Times are steady-state seconds for the same work (one epoch, one evaluation...); `ratio` is
    peer / lvmjax, so above 1 means lvmjax is faster. `compile_seconds` is lvmjax's first call
    less its steady-state time: tracing and compilation. A peer that is not installed has
    `peer_seconds = None` and says so in `note`.
    """

    benchmark: str
    workload: str
    lvmjax_seconds: float
    compile_seconds: float
    peer: str
    peer_seconds: float | None
    lvmjax_quality: str = ""
    peer_quality: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.peer_seconds is None else self.peer_seconds / self.lvmjax_seconds


def not_installed(package: str) -> str:
    """The note of a row whose peer is missing."""
    return f"skipped: {package} is not installed (pip install -e '.[bench]')"


def format_table(rows: list[Row]) -> str:
    header = ("benchmark", "lvmjax s", "compile s", "peer", "peer s", "ratio", "lvmjax quality", "peer quality")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.benchmark,
                f"{row.lvmjax_seconds:.3f}",
                f"{row.compile_seconds:.2f}",
                row.peer,
                "" if row.peer_seconds is None else f"{row.peer_seconds:.3f}",
                "" if row.ratio is None else f"{row.ratio:.2f}x",
                row.lvmjax_quality,
                row.peer_quality or row.note,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text += list(dict.fromkeys(f"{row.benchmark}: {row.workload}" for row in rows))
    return "\n".join(text)


def print_rows(rows: list[Row]) -> None:
    """The machine and the table, as each benchmark prints them when it runs alone."""
    print(f"machine: {machine()}, jax {jax.__version__}")
    print(format_table(rows))

"""Figures of fitted models: image grids, imputations, latent spaces and training curves.

Every function returns a matplotlib `Figure` built without pyplot, so nothing
needs a display and no global state is touched; `save` writes one to a PNG
atomically. This is the only module that imports matplotlib.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

MISSING_COLOUR = (0.85, 0.25, 0.2)  # the missing pixels of an observed image


def _as_images(images, image_shape: tuple[int, int], name: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    height, width = image_shape
    if images.ndim != 2 or images.shape[1] != height * width:
        raise ValueError(f"{name} must have shape (N, {height * width}) for images of {height}x{width}, "
                         f"got {images.shape}.")
    return images.reshape(-1, height, width)


def _hide_axes(axes) -> None:
    for axis in np.ravel(axes):
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)


def image_grid(images, image_shape: tuple[int, int], num_columns: int = 10, title: str | None = None,
               cell_inches: float = 0.6) -> Figure:
    """Images (N, H·W) with values in [0, 1], in rows of `num_columns`, black on white."""
    images = _as_images(images, image_shape, "images")
    num_rows = max(1, -(-len(images) // num_columns))
    figure = Figure(figsize=(num_columns * cell_inches, num_rows * cell_inches + (0.4 if title else 0)),
                    layout="constrained")
    axes = np.atleast_2d(figure.subplots(num_rows, num_columns, squeeze=False))
    for index, axis in enumerate(axes.flat):
        if index < len(images):
            axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    _hide_axes(axes)
    if title:
        figure.suptitle(title)
    return figure


def imputation_grid(originals, observed, imputations: dict[str, np.ndarray], image_shape: tuple[int, int],
                    title: str | None = None, cell_inches: float = 0.7) -> Figure:
    """One column per image: the original, what was observed (missing pixels in red), and each imputation.

    Args:
      originals: (N, H·W) true images.
      observed: (N, H·W) boolean masks, True where a pixel is observed.
      imputations: row label -> (N, H·W) images with the missing pixels filled
        (e.g. the conditional mean E[x_m | x_o]).
      image_shape: (H, W).
    """
    originals = _as_images(originals, image_shape, "originals")
    masks = _as_images(np.asarray(observed, bool), image_shape, "observed") > 0.5
    rows = [("original", None), ("observed", None)] + [(label, _as_images(images, image_shape, label))
                                                      for label, images in imputations.items()]
    num_images = len(originals)
    figure = Figure(figsize=(num_images * cell_inches + 1.2, len(rows) * cell_inches + (0.4 if title else 0)),
                    layout="constrained")
    axes = figure.subplots(len(rows), num_images, squeeze=False)
    for row, (label, images) in enumerate(rows):
        for column in range(num_images):
            axis = axes[row, column]
            if label == "original":
                axis.imshow(originals[column], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            elif label == "observed":
                shown = np.repeat(1.0 - originals[column][..., None], 3, axis=-1)
                shown[~masks[column]] = MISSING_COLOUR
                axis.imshow(shown, interpolation="nearest")
            else:
                axis.imshow(images[column], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    _hide_axes(axes)
    if title:
        figure.suptitle(title)
    return figure


def latent_scatter(embedding, labels=None, title: str | None = None) -> Figure:
    """A 2-D view of latent codes (N, 2), coloured by label where labels are given."""
    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[1] != 2:
        raise ValueError(f"embedding must have shape (N, 2), got {embedding.shape}; project it to 2-D first.")
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    axis = figure.subplots()
    if labels is None:
        axis.scatter(embedding[:, 0], embedding[:, 1], s=6, alpha=0.7)
    else:
        labels = np.asarray(labels)
        scatter = axis.scatter(embedding[:, 0], embedding[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8,
                               vmin=-0.5, vmax=9.5)
        figure.colorbar(scatter, ax=axis, ticks=np.unique(labels), label="label")
    axis.set_xlabel("z₁")
    axis.set_ylabel("z₂")
    if title:
        axis.set_title(title)
    return figure


def curves(series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str | None = None,
           x: dict[str, Sequence[float]] | None = None, log_x: bool = False) -> Figure:
    """Lines, one per named series (e.g. training objectives per epoch)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    for label, values in series.items():
        xs = np.asarray(x[label]) if x is not None else np.arange(1, len(values) + 1)
        axis.plot(xs, np.asarray(values, dtype=np.float64), label=label)
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend()
    if title:
        axis.set_title(title)
    return figure


def save(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Writes `figure` as a PNG to `path` whole or not at all (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, format="png", dpi=dpi)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path

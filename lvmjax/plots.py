"""Figures of fitted models: image grids, imputations, latent spaces, training curves and topics.

Every function returns a matplotlib `Figure` built without pyplot, so nothing
needs a display and no global state is touched; `save` writes one to a PNG
atomically. This is the only module that imports matplotlib.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lvmjax.errors import ArgumentError

__all__ = [
    "MISSING_COLOUR",
    "curves",
    "document_topics",
    "estimates_versus_samples",
    "forecast",
    "image_grid",
    "image_mosaic",
    "image_rows",
    "imputation_grid",
    "latent_scatter",
    "model_selection",
    "sample_clouds",
    "save",
    "segmented_series",
    "topic_words",
]

MISSING_COLOUR = (0.85, 0.25, 0.2)  # the missing pixels of an observed image


def _as_images(images, image_shape: tuple[int, int], name: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    height, width = image_shape
    if images.ndim != 2 or images.shape[1] != height * width:
        raise ArgumentError(
            f"{name} must have shape (N, {height * width}) for images of {height}x{width}, got {images.shape}."
        )
    return images.reshape(-1, height, width)


def _hide_axes(axes) -> None:
    for axis in np.ravel(axes):
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)


def image_grid(
    images, image_shape: tuple[int, int], num_columns: int = 10, title: str | None = None, cell_inches: float = 0.6
) -> Figure:
    """Images (N, H·W) with values in [0, 1], in rows of `num_columns`, black on white."""
    images = _as_images(images, image_shape, "images")
    num_rows = max(1, -(-len(images) // num_columns))
    figure = Figure(
        figsize=(num_columns * cell_inches, num_rows * cell_inches + (0.4 if title else 0)), layout="constrained"
    )
    axes = np.atleast_2d(figure.subplots(num_rows, num_columns, squeeze=False))
    for index, axis in enumerate(axes.flat):
        if index < len(images):
            axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    _hide_axes(axes)
    if title:
        figure.suptitle(title)
    return figure


def imputation_grid(
    originals,
    observed,
    imputations: dict[str, np.ndarray],
    image_shape: tuple[int, int],
    title: str | None = None,
    cell_inches: float = 0.7,
) -> Figure:
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
    rows: list[tuple[str, Any]] = [("original", None), ("observed", None)]  # (label, its images or None)
    rows += [(label, _as_images(images, image_shape, label)) for label, images in imputations.items()]
    num_images = len(originals)
    figure = Figure(
        figsize=(num_images * cell_inches + 1.2, len(rows) * cell_inches + (0.4 if title else 0)), layout="constrained"
    )
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
        raise ArgumentError(f"embedding must have shape (N, 2), got {embedding.shape}; project it to 2-D first.")
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    axis = figure.subplots()
    if labels is None:
        axis.scatter(embedding[:, 0], embedding[:, 1], s=6, alpha=0.7)
    else:
        labels = np.asarray(labels)
        scatter = axis.scatter(
            embedding[:, 0], embedding[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8, vmin=-0.5, vmax=9.5
        )
        figure.colorbar(scatter, ax=axis, ticks=np.unique(labels), label="label")
    axis.set_xlabel("z₁")
    axis.set_ylabel("z₂")
    if title:
        axis.set_title(title)
    return figure


def segmented_series(
    values,
    states,
    probabilities,
    boundary: int | None = None,
    title: str | None = None,
    times=None,
    xlabel: str = "time step",
) -> Figure:
    """A time series coloured by its hidden state, above the smoothed state probabilities.

    Args:
      values: (T, D) observations (each column drawn as a line, its points coloured by state).
      states: (T,) ints, the state of each step (the Viterbi path).
      probabilities: (T, K), p(z_t = k | x) (stacked areas).
      boundary: draw a vertical line before this step (where the test steps begin).
      times: (T,) x-axis values (default 0 … T - 1), named by `xlabel`.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    states = np.asarray(states)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_steps, num_states = probabilities.shape
    if values.shape[0] != num_steps or states.shape != (num_steps,):
        raise ArgumentError(
            f"values {values.shape}, states {states.shape} and probabilities {probabilities.shape} must share T."
        )
    times = np.arange(num_steps) if times is None else np.asarray(times)
    colours = matplotlib.colormaps["tab10"](np.arange(num_states) % 10)
    figure = Figure(figsize=(8, 5), layout="constrained")
    series_axis, probability_axis = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for column in range(values.shape[1]):
        series_axis.plot(times, values[:, column], color="0.6", linewidth=0.8, zorder=1)
        series_axis.scatter(times, values[:, column], c=colours[states], s=10, zorder=2)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[k], label=f"state {k}") for k in range(num_states)
    ]
    series_axis.legend(handles=handles, fontsize="small", ncols=min(num_states, 5))
    series_axis.set_ylabel("x_t (points: the Viterbi state)")
    probability_axis.stackplot(times, probabilities.T, colors=colours, alpha=0.8)
    probability_axis.set_ylim(0, 1)
    probability_axis.set_ylabel("p(z_t = k | x)")
    probability_axis.set_xlabel(xlabel)
    if boundary is not None:
        for axis in (series_axis, probability_axis):
            axis.axvline(times[boundary] - 0.5 if boundary < num_steps else times[-1], color="k", linestyle="--")
        series_axis.annotate(
            "test →",
            (times[min(boundary, num_steps - 1)], 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize="small",
        )
    if title:
        series_axis.set_title(title)
    return figure


def sample_clouds(clouds: Mapping[str, Sequence], titles: Sequence[str], title: str | None = None) -> Figure:
    """Draws of several distributions over the same d-dimensional space, one panel per case, each projected
    on the two widest directions (SVD) of the first named set of draws in that panel.

    Args:
      clouds: name -> one array of draws (N, d) per panel.
      titles: one title per panel.
    """
    names = list(clouds)
    figure = Figure(figsize=(3.2 * len(titles), 3.4), layout="constrained")
    for index, axis in enumerate(figure.subplots(1, len(titles), squeeze=False)[0]):
        reference = np.asarray(clouds[names[0]][index], dtype=np.float64)
        centre = reference.mean(axis=0)
        directions = np.linalg.svd(reference - centre, full_matrices=False)[2][:2]
        for name in reversed(names):
            projected = (np.asarray(clouds[name][index], dtype=np.float64) - centre) @ directions.T
            axis.scatter(projected[:, 0], projected[:, 1], s=3, alpha=0.3, label=name)
        axis.set_title(titles[index], fontsize="small")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.axes[0].legend(fontsize="x-small", markerscale=3)
    if title:
        figure.suptitle(title)
    return figure


def forecast(values, mean, stddev, title: str | None = None) -> Figure:
    """A series (T, D) and its forecast for the next H steps: the mean (H, D) with a band of ± 2 stddev (H, D)."""
    values, mean, stddev = (np.asarray(array, dtype=np.float64) for array in (values, mean, stddev))
    values = values[:, None] if values.ndim == 1 else values
    mean, stddev = mean.reshape(len(mean), -1), stddev.reshape(len(stddev), -1)
    if mean.shape != stddev.shape or mean.shape[1] != values.shape[1]:
        raise ArgumentError(f"mean {mean.shape} and stddev {stddev.shape} must be (H, {values.shape[1]}).")
    figure = Figure(figsize=(8, 3.5), layout="constrained")
    axis = figure.subplots()
    past = np.arange(len(values))
    future = np.arange(len(values), len(values) + len(mean))
    for column in range(values.shape[1]):
        (line,) = axis.plot(past, values[:, column], linewidth=1, label="observed" if column == 0 else None)
        axis.plot(
            future,
            mean[:, column],
            color=line.get_color(),
            linestyle="--",
            label="forecast mean" if column == 0 else None,
        )
        axis.fill_between(
            future,
            mean[:, column] - 2 * stddev[:, column],
            mean[:, column] + 2 * stddev[:, column],
            color=line.get_color(),
            alpha=0.2,
            label="± 2 standard deviations" if column == 0 else None,
        )
    axis.set_xlabel("time step")
    axis.set_ylabel("x_t")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    if title:
        axis.set_title(title)
    return figure


def curves(
    series: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    x: dict[str, Sequence[float]] | None = None,
    log_x: bool = False,
) -> Figure:
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


def model_selection(
    sizes: Mapping[str, Sequence[int]],
    bic: Mapping[str, Sequence[float]],
    heldout: Mapping[str, Sequence[float]],
    chosen: tuple[str, int],
    xlabel: str,
    title: str | None = None,
    excluded: Mapping[str, Sequence[bool]] | None = None,
) -> Figure:
    """BIC (lower is better) and held-out log-likelihood per datapoint (higher is better) against the
    model's size, one line per family (a covariance type, say), the chosen candidate ringed on both and
    the `excluded` ones (collapsed fits, say) crossed."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    for label in sizes:
        xs = np.asarray(sizes[label])
        crossed = np.asarray(excluded[label], bool) if excluded is not None else np.zeros(len(xs), bool)
        for axis, values in ((left, bic), (right, heldout)):
            ys = np.asarray(values[label], dtype=np.float64)
            (line,) = axis.plot(xs, ys, marker="o", markersize=3, label=label)
            if crossed.any():
                axis.plot(xs[crossed], ys[crossed], "x", markersize=9, color=line.get_color())
    family, size = chosen
    index = list(sizes[family]).index(size)
    for axis, values, ylabel in ((left, bic, "BIC"), (right, heldout, "held-out log-likelihood per datapoint")):
        axis.plot([size], [values[family][index]], "o", markersize=11, fillstyle="none", color="black")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    left.annotate("chosen", (size, bic[family][index]), textcoords="offset points", xytext=(8, 8))
    any_excluded = excluded is not None and any(np.any(flags) for flags in excluded.values())
    if any_excluded:
        right.plot([], [], "x", color="grey", label="collapsed: never chosen")
    if len(sizes) > 1 or any_excluded:
        right.legend()
    if title:
        figure.suptitle(title)
    return figure


def _tile(images: np.ndarray, num_columns: int, gap: int = 1) -> np.ndarray:
    """Images (N, H, W) side by side in rows of `num_columns`, `gap` pixels of NaN (drawn white) between them."""
    num, height, width = images.shape
    num_rows = max(1, -(-num // num_columns))
    tiled = np.full((num_rows * (height + gap) - gap, num_columns * (width + gap) - gap), np.nan)
    for index, image in enumerate(images):
        row, column = divmod(index, num_columns)
        tiled[
            row * (height + gap) : row * (height + gap) + height,
            column * (width + gap) : column * (width + gap) + width,
        ] = image
    return tiled


def _show_tiled(axis, tiled: np.ndarray) -> None:
    colours = matplotlib.colormaps["gray_r"].with_extremes(bad="white")
    axis.imshow(np.ma.masked_invalid(tiled), cmap=colours, vmin=0, vmax=1, interpolation="nearest")


def image_mosaic(
    images, image_shape: tuple[int, int], num_columns: int = 10, title: str | None = None, cell_inches: float = 0.6
) -> Figure:
    """Images (N, H·W) with values in [0, 1] tiled into ONE picture, in rows of `num_columns`, black on white.

    What `image_grid` shows, drawn as one image instead of one axes per image, so that a
    hundred images take a fraction of the time.
    """
    images = _as_images(images, image_shape, "images")
    tiled = _tile(images, num_columns)
    num_rows = max(1, -(-len(images) // num_columns))
    figure = Figure(
        figsize=(num_columns * cell_inches, num_rows * cell_inches + (0.4 if title else 0)), layout="constrained"
    )
    axis = figure.subplots()
    _show_tiled(axis, tiled)
    _hide_axes(axis)
    if title:
        figure.suptitle(title)
    return figure


def image_rows(
    rows: Mapping[str, np.ndarray],
    image_shape: tuple[int, int],
    captions: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
    cell_inches: float = 0.7,
) -> Figure:
    """Labelled rows of images with values in [0, 1], e.g. originals above their reconstructions.

    Each row is one tiled picture (as in `image_mosaic`), labelled on its left.

    Args:
      rows: row label -> (N_row, H·W) images; rows may have different lengths.
      image_shape: (H, W).
      captions: row label -> one short text per image, drawn under it (e.g. a score).
      title: of the figure.
    """
    shown = [(label, _as_images(images, image_shape, label)) for label, images in rows.items()]
    if not shown:
        raise ArgumentError("rows is empty; give at least one row of images.")
    captions = captions or {}
    for label, texts in captions.items():
        if label not in rows or len(texts) != len(rows[label]):
            raise ArgumentError(f"captions[{label!r}] must name a row and have one text per image of it.")
    num_columns = max(len(images) for _, images in shown)
    row_inches = cell_inches + (0.25 if captions else 0)
    figure = Figure(
        figsize=(num_columns * cell_inches + 1.2, len(shown) * row_inches + (0.4 if title else 0)), layout="constrained"
    )
    axes = figure.subplots(len(shown), 1, squeeze=False)[:, 0]
    height, width = image_shape
    for axis, (label, images) in zip(axes, shown, strict=True):
        tiled = np.full((height, num_columns * (width + 1) - 1), np.nan)
        tiled[:, : len(images) * (width + 1) - 1] = _tile(images, len(images))
        _show_tiled(axis, tiled)
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for column, text in enumerate(captions.get(label, ())):
            axis.text(column * (width + 1) + (width - 1) / 2, height - 0.5, text, ha="center", va="top", fontsize=7)
    _hide_axes(axes)
    if title:
        figure.suptitle(title)
    return figure


def estimates_versus_samples(
    num_samples: Sequence[int],
    estimates: dict[str, tuple[Sequence[float], Sequence[float]]],
    reference: dict[str, float] | None = None,
    zoom: Sequence[str] = (),
    ylabel: str = "estimate of log p(x)",
    title: str | None = None,
) -> Figure:
    """Monte Carlo estimates as the number of samples K grows, on log-K axes.

    Left: each estimate ± 2 standard errors; then, where `zoom` names some of the
    estimates, the same for those alone on their own scale; right: the standard
    errors. A NaN standard error (K = 1 has none) draws no bar and no point on the right.

    Args:
      num_samples: the K values, increasing.
      estimates: label -> (estimates, standard errors), one of each per K.
      reference: label -> value, drawn as horizontal dashed lines beside the estimates.
      zoom: labels of estimates to show again in a middle panel, e.g. those that a far
        worse one squeezes together.
      ylabel: what is estimated.
      title: of the figure.
    """
    ks = np.asarray(num_samples, dtype=np.float64)
    for label, (values, stderrs) in estimates.items():
        if np.shape(values) != ks.shape or np.shape(stderrs) != ks.shape:
            raise ArgumentError(
                f"estimates[{label!r}] must have one estimate and one standard error per K "
                f"({len(ks)}), got {np.shape(values)} and {np.shape(stderrs)}."
            )
    unknown = [label for label in zoom if label not in estimates]
    if unknown:
        raise ArgumentError(f"zoom names {unknown}, which are not among the estimates {list(estimates)}.")
    colours = {label: f"C{index}" for index, label in enumerate(estimates)}
    figure = Figure(figsize=(14 if zoom else 10, 4), layout="constrained")
    axes = figure.subplots(1, 3 if zoom else 2)
    panels = [(axes[0], list(estimates))] + ([(axes[1], list(zoom))] if zoom else [])
    right = axes[-1]
    for axis, labels in panels:
        for label in labels:
            means, errors = (np.asarray(array, np.float64) for array in estimates[label])
            axis.errorbar(
                ks, means, yerr=2 * np.nan_to_num(errors), marker="o", capsize=3, color=colours[label], label=label
            )
        for index, (label, value) in enumerate((reference or {}).items()):
            axis.axhline(value, linestyle="--", color=f"C{len(estimates) + index}", linewidth=1, label=label)
        axis.set_xscale("log")
        axis.set_xlabel("K (samples per datapoint)")
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=8)
    if zoom:
        axes[1].set_title("zoomed in", fontsize=10)
    any_stderr = False
    for label, (_, label_stderrs) in estimates.items():
        errors = np.asarray(label_stderrs, np.float64)
        defined = np.isfinite(errors) & (errors > 0)
        any_stderr |= bool(np.any(defined))
        right.plot(ks[defined], errors[defined], marker="o", color=colours[label], label=label)
    right.set_xscale("log")
    if any_stderr:  # a log axis with nothing on it warns
        right.set_yscale("log")
    right.set_xlabel("K (samples per datapoint)")
    right.set_ylabel("standard error")
    for axis in axes:
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure


def topic_words(
    words: Sequence[Sequence[str]],
    probabilities: Sequence[Sequence[float]],
    captions: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """The top words of each topic as horizontal bars of p(w | topic), one small panel per topic.

    Args:
      words: K lists of the top words, most probable first.
      probabilities: the K lists of their probabilities.
      captions: a caption of each topic (its coherence), or None.
    """
    if len(words) != len(probabilities) or any(
        len(row) != len(values) for row, values in zip(words, probabilities, strict=True)
    ):
        raise ArgumentError("words and probabilities must hold the same number of topics and of words in each.")
    num_topics = len(words)
    columns = min(5, num_topics)
    rows = -(-num_topics // columns)
    height = 0.22 * max(len(row) for row in words) + 0.7
    figure = Figure(figsize=(2.6 * columns, height * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for topic, axis in enumerate(axes):
        if topic >= num_topics:
            axis.set_visible(False)
            continue
        values = np.asarray(probabilities[topic], dtype=np.float64)
        positions = np.arange(len(values))
        axis.barh(positions, values, color=matplotlib.colormaps["tab20"](topic % 20))
        axis.set_yticks(positions, labels=list(words[topic]), fontsize=7)
        axis.invert_yaxis()
        axis.tick_params(axis="x", labelsize=6)
        heading = f"topic {topic + 1}" + (f" ({captions[topic]})" if captions is not None else "")
        axis.set_title(heading, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def document_topics(proportions: Any, names: Sequence[str], title: str | None = None) -> Figure:
    """Each document's topic proportions θ_d as one stacked horizontal bar (topic k in colour k).

    Args:
      proportions: (N, K), rows summing to 1.
      names: the N documents' names.
    """
    proportions = np.asarray(proportions, dtype=np.float64)
    if proportions.ndim != 2 or proportions.shape[0] != len(names):
        raise ArgumentError(
            f"proportions must be (N, K) with one row per name ({len(names)}), got shape {proportions.shape}."
        )
    num_docs, num_topics = proportions.shape
    figure = Figure(figsize=(7, 0.35 * num_docs + 1.4), layout="constrained")
    axis = figure.subplots()
    left = np.zeros(num_docs)
    colours = matplotlib.colormaps["tab20"]
    for topic in range(num_topics):
        axis.barh(
            np.arange(num_docs), proportions[:, topic], left=left, color=colours(topic % 20), label=f"{topic + 1}"
        )
        left += proportions[:, topic]
    axis.set_yticks(np.arange(num_docs), labels=list(names), fontsize=7)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("topic proportion E[θ_dk]")
    axis.legend(
        title="topic",
        ncols=min(num_topics, 10),
        fontsize=6,
        title_fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if num_docs < 8 else -0.12),
    )
    if title:
        axis.set_title(title)
    return figure


def save(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Writes `figure` as a PNG to `path` whole or not at all (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0o600 is for secrets; a figure is for reading
    try:
        figure.savefig(temporary, format="png", dpi=dpi)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path

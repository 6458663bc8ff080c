"""Figures render without a display, show what they are given, and are written whole or not at all."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lvmjax import plots


def pixels(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def test_an_image_grid_draws_each_image_in_its_cell():
    images = np.zeros((12, 16))
    images[3] = 1.0  # one black square among white ones
    figure = plots.image_grid(images, (4, 4), num_columns=5)
    axes = figure.axes
    assert len(axes) == 15  # three rows of five; the last three cells are empty
    assert [len(axis.images) for axis in axes] == [1] * 12 + [0] * 3
    np.testing.assert_array_equal(axes[3].images[0].get_array(), np.ones((4, 4)))
    assert pixels(figure).min() == 0  # the black square is drawn


def test_an_imputation_grid_has_a_row_per_method_and_marks_missing_pixels():
    originals = np.eye(4)[:, :4].repeat(4, axis=1)  # (4, 16)
    observed = np.ones((4, 16), bool)
    observed[:, :8] = False
    figure = plots.imputation_grid(
        originals,
        observed,
        {"mixture": originals * 0.5, "vae": originals},
        image_shape=(4, 4),
        title="top half missing",
    )
    assert len(figure.axes) == 4 * 4
    labels = [axis.get_ylabel() for axis in figure.axes[::4]]
    assert labels == ["original", "observed", "mixture", "vae"]
    shown = figure.axes[4].images[0].get_array()  # the first observed image: missing rows in red
    np.testing.assert_allclose(shown[0, 0], plots.MISSING_COLOUR)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"images must have shape \(N, 16\) for images of 4x4, got \(2, 15\)"):
        plots.image_grid(np.zeros((2, 15)), (4, 4))
    with pytest.raises(ValueError, match=r"embedding must have shape \(N, 2\)"):
        plots.latent_scatter(np.zeros((5, 3)))


def test_save_writes_a_png_and_leaves_an_existing_file_when_it_fails(tmp_path):
    path = plots.save(plots.curves({"vae": [3.0, 2.0, 1.5]}, "epoch", "objective"), tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b.png").write_bytes(b"old")
    broken = plots.latent_scatter(np.zeros((3, 2)), labels=[0, 1, 2])
    broken.savefig = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        plots.save(broken, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b.png", "sub"]  # no temporary left


def test_an_image_mosaic_draws_every_image_in_one_picture():
    images = np.zeros((12, 16))
    images[3] = 1.0
    figure = plots.image_mosaic(images, (4, 4), num_columns=5)
    assert len(figure.axes) == 1
    tiled = figure.axes[0].images[0].get_array()
    assert tiled.shape == (3 * 5 - 1, 5 * 5 - 1)  # three rows of five, one pixel between images
    np.testing.assert_array_equal(tiled[0:4, 15:19], np.ones((4, 4)))  # the fourth image
    np.testing.assert_array_equal(tiled[0:4, 0:4], np.zeros((4, 4)))
    assert tiled.mask[4].all() and tiled.mask[10:, 10:].all()  # the gaps and the empty cells show as white
    assert pixels(figure).min() == 0


def test_image_rows_label_each_row_and_caption_each_image():
    rows = {"original": np.zeros((3, 4)), "reconstruction": np.ones((2, 4))}
    figure = plots.image_rows(rows, (2, 2), captions={"original": ["a", "b", "c"]}, title="t")
    assert [axis.get_ylabel() for axis in figure.axes] == ["original", "reconstruction"]
    assert [text.get_text() for text in figure.axes[0].texts] == ["a", "b", "c"]
    second = figure.axes[1].images[0].get_array()
    assert second.shape == (2, 3 * 3 - 1)  # padded to the longest row
    np.testing.assert_array_equal(second[:, :5].filled(np.nan)[:, [0, 1, 3, 4]], np.ones((2, 4)))
    assert second.mask[:, 5:].all()
    with pytest.raises(ValueError, match=r"captions\['original'\] must name a row and have one text per image"):
        plots.image_rows(rows, (2, 2), captions={"original": ["a"]})


def test_estimates_versus_samples_draws_bars_of_two_standard_errors():
    ks = [1, 10, 100]
    estimates = {
        "naive": ([-60.0, -30.0, -20.0], [np.nan, 2.0, 1.0]),
        "good": ([-16.0, -15.5, -15.2], [np.nan, 0.1, 0.05]),
    }
    figure = plots.estimates_versus_samples(ks, estimates, reference={"exact": -15.0}, zoom=["good"])
    left, middle, right = figure.axes
    assert [text.get_text() for text in left.get_legend().get_texts()] == ["exact", "naive", "good"]
    assert [text.get_text() for text in middle.get_legend().get_texts()] == ["exact", "good"]
    bars = left.containers[0][2][0].get_segments()  # the error bars of "naive": ± 2 standard errors
    np.testing.assert_allclose([segment[:, 1] for segment in bars], [[-60, -60], [-34, -26], [-22, -18]])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [2.0, 1.0])  # K = 1 has no standard error
    assert right.get_yscale() == "log" and left.get_xscale() == "log"
    assert len(plots.estimates_versus_samples(ks, estimates).axes) == 2
    with pytest.raises(ValueError, match=r"estimates\['bad'\] must have one estimate and one standard error per K"):
        plots.estimates_versus_samples(ks, {"bad": ([1.0], [0.1])})
    with pytest.raises(ValueError, match="zoom names"):
        plots.estimates_versus_samples(ks, estimates, zoom=["other"])

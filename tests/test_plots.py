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
    figure = plots.imputation_grid(originals, observed, {"mixture": originals * 0.5, "vae": originals},
                                   image_shape=(4, 4), title="top half missing")
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

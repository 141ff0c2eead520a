"""Shared figures: the image mosaic's layout and errors."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mi_lib import plotting  # noqa: E402


def test_image_mosaic_tiles_and_frames():
    images = torch.zeros(5, 1, 4, 4)
    images[2] = 1.0
    fig, ax = plt.subplots()
    plotting.image_mosaic(ax, images, ["red", None, "blue", "red", "red"], ncols=3, pad=1, legend={"a": "red"})
    canvas = ax.get_images()[0].get_array()
    assert canvas.shape == (2 * 6, 3 * 6, 3)
    np.testing.assert_allclose(canvas[0, 0], (1.0, 0.0, 0.0))  # image 0's frame is red
    np.testing.assert_allclose(canvas[0, 6], (0.8, 0.8, 0.8))  # image 1 has no colour: grey
    np.testing.assert_allclose(canvas[1, 13], (1.0, 1.0, 1.0))  # image 2's pixels are white
    np.testing.assert_allclose(canvas[0, 12], (0.0, 0.0, 1.0))
    assert ax.get_legend() is not None
    plt.close(fig)


def test_image_mosaic_errors():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="images must have shape"):
        plotting.image_mosaic(ax, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="colors has 1 entries for 2 images"):
        plotting.image_mosaic(ax, torch.zeros(2, 4, 4), ["red"])
    plt.close(fig)


@pytest.mark.parametrize("n, ncols, shape", [(5, 3, (2, 3)), (2, 3, (1, 2)), (4, 2, (2, 2)), (1, 4, (1, 1))])
def test_panels_wrap_into_rows_of_the_books_width(n, ncols, shape):
    fig, axes = plotting.panels(n, ncols, 2.5)
    assert len(axes) == n and all(ax.axison for ax in axes)
    spare = [ax for ax in fig.axes if ax not in axes]
    assert len(fig.axes) == shape[0] * shape[1] and not any(ax.axison for ax in spare)
    np.testing.assert_allclose(fig.get_size_inches(), (plotting.BOOK_WIDTH, 2.5 * shape[0]))
    assert [ax.get_subplotspec().rowspan.start for ax in axes] == [i // shape[1] for i in range(n)]  # reading order
    plt.close(fig)


def test_image_mosaic_dividers_cross_each_image_only():
    fig, ax = plt.subplots()
    plotting.image_mosaic(ax, torch.zeros(5, 1, 4, 4), ncols=3, pad=1, dividers=(2,))
    (lines,) = ax.collections
    segments = [s for s in lines.get_segments()]
    assert len(segments) == 5  # one per image; none over the last row's empty cell
    (x0, y0), (x1, y1) = segments[4]  # image 4: row 1, column 1, its pixels from (1 + 6, 1 + 6)
    assert x0 == x1 == 6 + 1 + 2 - 0.5 and (y0, y1) == (6 + 1 - 0.5, 6 + 1 + 4 - 0.5)
    plt.close(fig)

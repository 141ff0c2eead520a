"""Figures shared by the chapters: one style, histograms against closed-form densities, scatters against
modes, image mosaics with coloured frames. Every function draws on a given matplotlib Axes and returns it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from .datasets.mixtures import GaussianMixture

__all__ = ["BOOK_WIDTH", "FILTER_COLORS", "FILTER_LABELS", "use_book_style", "panels", "hist_vs_density", "scatter_vs_modes",
           "image_mosaic"]

#: How wide the chapters draw a figure, in inches at the book's 100 dpi: 950 px, which the book's column (about
#: 690 px at a 1280-px window) shows at about 1/1.4 of its size, so 10-pt labels read at 10 px. A legend or label
#: outside the axes widens the saved figure: ``scripts/check_book.py`` fails a page whose figure is shrunk more than 1.5x.
BOOK_WIDTH = 9.5

#: One colour and one legend label per recursive-training filter (chapter 7 and its sections), the same on every page.
FILTER_COLORS = {"none": "C3", "random": "C1", "hal": "C0", "real": "C2"}
FILTER_LABELS = {"none": "no filter", "random": "random filter", "hal": "Hal filter (lowest Hal kept)", "real": "control: real data each generation"}


def use_book_style() -> None:
    """Matplotlib defaults for the book: readable sizes, light grid, no top/right spines."""
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.figsize": (7.5, 3.6),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
        }
    )


def panels(n: int, ncols: int, row_height: float, width: float = BOOK_WIDTH, **subplots_kw: object) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` axes in rows of at most ``ncols``, ``width`` inches wide and ``row_height`` inches a row
    (so that it fits the book's column however many panels a scale asks for); the last row's spare axes are
    hidden. Returns the figure and the ``n`` axes in reading order."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), squeeze=False, **subplots_kw)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def hist_vs_density(
    ax: Axes,
    x: Tensor,
    density: GaussianMixture | None = None,
    *,
    bins: int = 200,
    x_range: tuple[float, float] | None = None,
    log: bool = False,
    label: str = "samples",
    title: str | None = None,
) -> Axes:
    """Density histogram of 1D samples x: (N, 1), with the closed-form pdf of ``density`` on top."""
    values = x.detach().reshape(-1).double().cpu().numpy()
    lo, hi = x_range if x_range is not None else (float(values.min()), float(values.max()))
    ax.hist(values, bins=bins, range=(lo, hi), density=True, alpha=0.55, label=label, log=log)
    if density is not None:
        grid = torch.linspace(lo, hi, 2000, dtype=torch.float64)[:, None]
        ax.plot(grid[:, 0].numpy(), density.prob(grid).numpy(), color="k", lw=1.0, label="true density")
    ax.set_xlabel("x")
    ax.set_ylabel("density (log scale)" if log else "density")
    if title:
        ax.set_title(title)
    return ax


def scatter_vs_modes(
    ax: Axes,
    x: Tensor,
    mixture: GaussianMixture | None = None,
    *,
    max_points: int = 20_000,
    color: str | np.ndarray = "C0",
    title: str | None = None,
    lim: float | None = None,
) -> Axes:
    """Scatter of 2D samples x: (N, 2) (at most ``max_points``), with the mixture's modes as crosses."""
    pts = x.detach()[:max_points].double().cpu().numpy()
    c = color[:max_points] if isinstance(color, np.ndarray) else color
    ax.scatter(pts[:, 0], pts[:, 1], s=1.0, alpha=0.4, c=c, linewidths=0)
    if mixture is not None:
        m = mixture.means.numpy()
        ax.scatter(m[:, 0], m[:, 1], marker="x", s=18, c="k", linewidths=0.8, label="modes")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return ax


def image_mosaic(
    ax: Axes,
    images: Tensor | np.ndarray,
    colors: list | None = None,
    *,
    ncols: int = 16,
    pad: int = 3,
    legend: Mapping[str, object] | None = None,
    dividers: Sequence[float] = (),
) -> Axes:
    """Tile grayscale images (N, 1, H, W) or (N, H, W) in [0, 1] into one picture, ``ncols`` per row, each
    framed by a ``pad``-pixel border in its colour from ``colors`` (any matplotlib colour; None: grey).
    ``legend`` maps a label to its colour and adds a legend of coloured patches; ``dividers``, x positions in an
    image's pixels (e.g. the boundaries of Simple Shapes' columns), are drawn as dotted lines on every tile. Returns ``ax``."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W) with N >= 1, got {x.shape}")
    if colors is not None and len(colors) != x.shape[0]:
        raise ValueError(f"colors has {len(colors)} entries for {x.shape[0]} images")
    n, h, w = x.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    cell_h, cell_w = h + 2 * pad, w + 2 * pad
    canvas = np.ones((nrows * cell_h, ncols * cell_w, 3))
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = r * cell_h, c * cell_w
        canvas[y0 : y0 + cell_h, x0 : x0 + cell_w] = to_rgb(colors[i]) if colors is not None and colors[i] is not None else (0.8, 0.8, 0.8)
        canvas[y0 + pad : y0 + pad + h, x0 + pad : x0 + pad + w] = np.clip(x[i], 0.0, 1.0)[..., None]
    ax.imshow(canvas, interpolation="nearest")
    if len(dividers):  # on each image, not across the frames or the empty cells of a last row
        tiles = [divmod(i, ncols) for i in range(n)]
        ax.vlines([c * cell_w + pad + d - 0.5 for r, c in tiles for d in dividers],
                  [r * cell_h + pad - 0.5 for r, c in tiles for d in dividers],
                  [r * cell_h + pad + h - 0.5 for r, c in tiles for d in dividers], colors="white", lw=0.5, linestyles=":")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if legend:
        ax.legend(handles=[Patch(color=col, label=lab) for lab, col in legend.items()], loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return ax

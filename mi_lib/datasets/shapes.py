"""Simple Shapes: the paper's 64x64 image data set, a classical shape counter, and a hallucination taxonomy.

Each image has three 21-px columns (triangle | square | pentagon, left to right, 63 px in all, padded to
64); each column holds its own shape with probability p, and all-blank images are redrawn (the official
generator's rules). Shapes are fixed pixel stencils pasted at random integer positions, so every pixel is
exactly 0 or 1 and every area is exact: square 8x8 = 64 px, triangle 66 px (apex down), pentagon 70 px
(circumradius 5, one vertex pointing right, as in the official code).

The counter (:func:`count_shapes`) needs no network: it compares each connected component with the three
stencils pixel by pixel. :func:`classify_image` then gives every image one label from :data:`LABELS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ..params import number_parameter, positive_int

__all__ = [
    "SHAPES", "LABELS", "COLUMN_WIDTH", "ShapesDataset", "Component", "ShapeReport", "make_shapes", "shape_stencil",
    "to_model_range", "from_model_range", "count_shapes", "classify_image", "classify_images", "invalid_rate",
    "SHAPE_SIZED", "blobs_per_column", "repeated_shape", "repeated_shapes", "repeated_same_shape"
]

#: Shape classes, in column order: shape k belongs in column k.
SHAPES = ("triangle", "square", "pentagon")
#: Image labels, from the most to the least severe (the precedence of :func:`classify_image`).
LABELS = ("malformed", "duplicated", "misplaced", "valid")
#: Width of one column in pixels; the three columns cover x = 0..62 and the image is padded to 64.
COLUMN_WIDTH = 21
_CONTENT = 3 * COLUMN_WIDTH  # 63: the official canvas before padding
_MARGIN = 1  # empty pixels kept between a shape and its column's edges, so neighbours never touch
_DILATE = 0.4  # a pixel is on when its centre lies within this distance of the polygon (see _stencils)
_COUNT_CHUNK = 4096  # images labelled at once by count_shapes (about 100 MB of labels)
_WINDOW = 8  # half-size of the (17, 17) window in which components are compared with the stencils


# ---------------------------------------------------------------------------------------------- stencils
def _polygon_mask(vertices: Sequence[tuple[float, float]], dilate: float) -> np.ndarray:
    """Pixels (cropped bool mask) whose centres lie inside the convex polygon or within ``dilate`` of it.
    Vertices are (x, y) in pixel units, y pointing down; pixel centres sit at integer coordinates."""
    v = np.asarray(vertices, dtype=np.float64)
    y, x = np.mgrid[-16:17, -16:17].astype(np.float64)
    edges = np.roll(v, -1, axis=0) - v
    orientation = np.sign(np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]))
    inside = np.ones_like(x, dtype=bool)
    dist = np.full_like(x, np.inf)
    for a, e in zip(v, edges):
        inside &= orientation * (e[0] * (y - a[1]) - e[1] * (x - a[0])) >= -1e-9
        s = np.clip(((x - a[0]) * e[0] + (y - a[1]) * e[1]) / (e @ e), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(x - a[0] - s * e[0], y - a[1] - s * e[1]))
    mask = inside | (dist <= dilate + 1e-9)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@cache
def _stencils() -> tuple[np.ndarray, ...]:
    """The three shapes as bool masks, rasterised once. A pixel is on when its centre is inside the polygon
    or within 0.4 px of its outline -- the official code draws each polygon filled *and* outlined, which is
    why its areas exceed the geometric ones. Square: corners 7 px apart -> 8x8 = 64 px. Triangle: equilateral,
    side 11, top edge horizontal, apex down -> 12 wide, 10 tall, 66 px. Pentagon: circumradius 5, a vertex
    pointing right -> 9 wide, 10 tall, 70 px."""
    h = 11 * math.sqrt(3) / 2
    triangle = [(-5.0, -h / 3), (6.0, -h / 3), (0.5, 2 * h / 3)]
    square = [(0.0, 0.0), (7.0, 0.0), (7.0, 7.0), (0.0, 7.0)]
    pentagon = [(0.5 + 5 * math.cos(2 * math.pi * k / 5), 0.5 - 5 * math.sin(2 * math.pi * k / 5)) for k in range(5)]
    masks = tuple(_polygon_mask(p, _DILATE) for p in (triangle, square, pentagon))
    assert [int(m.sum()) for m in masks] == [66, 64, 70]
    for m in masks:
        m.setflags(write=False)
    return masks


def shape_stencil(kind: str) -> Tensor:
    """The pixel stencil of one shape (``"triangle"``, ``"square"`` or ``"pentagon"``): a bool tensor (h, w)
    cropped to its bounding box; (10, 12), (8, 8) and (10, 9) respectively."""
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}; choose one of {SHAPES}")
    return torch.from_numpy(_stencils()[SHAPES.index(kind)].copy())


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


# ---------------------------------------------------------------------------------------------- data set
@dataclass(frozen=True, eq=False)
class ShapesDataset:
    """A Simple Shapes data set of n images.

    Attributes:
        images: (n, 1, size, size) float32, every pixel exactly 0.0 (background) or 1.0 (shape).
        present: (n, 3) bool, whether the triangle, square, pentagon is drawn; no row is all False.
        positions: (n, 3, 2) float32, each shape's pixel centroid as (x, y) (x = column index, y = row index,
            pixel centres at integers); NaN where the shape is absent.
        seed, p: the arguments that made it.
    """

    images: Tensor
    present: Tensor
    positions: Tensor
    seed: int
    p: float

    def __len__(self) -> int:
        return self.images.shape[0]


def to_model_range(images: Tensor) -> Tensor:
    """Map images from [0, 1] to the diffusion model's range [-1, 1] (2x - 1); any shape."""
    return images * 2 - 1


def from_model_range(x: Tensor) -> Tensor:
    """Map model outputs from [-1, 1] back to [0, 1], clamping what falls outside; any shape."""
    return ((x + 1) / 2).clamp(0.0, 1.0)


_CHUNK = 1024  # candidates drawn per round; fixed so that a data set's first k images do not depend on n


def make_shapes(n: int, seed: int, *, p: float = 0.5, size: int = 64) -> ShapesDataset:
    """Generate ``n`` Simple Shapes images (see the module docstring), deterministic in ``seed``.

    Candidates are drawn in fixed rounds of 1,024 from ``np.random.default_rng(seed)`` (presence, then
    positions) and blank ones dropped, so ``make_shapes(k, s)`` is the first k images of ``make_shapes(n, s)``
    for k <= n. Each shape is placed uniformly at integer positions 1 px inside its 21x63 column. Because blank
    images are redrawn, a shape is present in a fraction p / (1 - (1 - p)^3) of the images (4/7 for p = 0.5),
    not p. Images: (n, 1, size, size), size >= 63 (the 63x63 canvas padded with zeros on the right and bottom)."""
    n = positive_int(n, "n")
    number_parameter(seed, "seed", int, at_least=0)
    if not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    size = number_parameter(size, "size", int, at_least=_CONTENT)  # three COLUMN_WIDTH-px columns
    stencils = _stencils()
    # per shape, the inclusive range of its top-left corner inside its column, with a 1-px margin
    x_lo = [k * COLUMN_WIDTH + _MARGIN for k in range(3)]
    x_hi = [(k + 1) * COLUMN_WIDTH - _MARGIN - s.shape[1] for k, s in enumerate(stencils)]
    y_hi = [_CONTENT - _MARGIN - s.shape[0] for s in stencils]

    rng = np.random.default_rng(int(seed))
    present_parts, corner_parts, kept = [], [], 0
    while kept < n:
        present = rng.random((_CHUNK, 3)) < p
        corners = np.stack(  # (chunk, 3, 2): top-left (x, y) per shape
            [np.stack([rng.integers(x_lo[k], x_hi[k], size=_CHUNK, endpoint=True),
                       rng.integers(_MARGIN, y_hi[k], size=_CHUNK, endpoint=True)], axis=1) for k in range(3)],
            axis=1,
        )
        keep = present.any(1)
        present_parts.append(present[keep])
        corner_parts.append(corners[keep])
        kept += int(keep.sum())
    present = np.concatenate(present_parts)[:n]
    corners = np.concatenate(corner_parts)[:n]

    images = np.zeros((n, size, size), dtype=np.float32)
    positions = np.full((n, 3, 2), np.nan, dtype=np.float32)
    for k, stencil in enumerate(stencils):
        idx = np.flatnonzero(present[:, k])
        dy, dx = np.nonzero(stencil)
        x0, y0 = corners[idx, k, 0], corners[idx, k, 1]
        images[idx[:, None], y0[:, None] + dy, x0[:, None] + dx] = 1.0
        cx, cy = _centroid(stencil)
        positions[idx, k, 0] = x0 + cx
        positions[idx, k, 1] = y0 + cy
    return ShapesDataset(
        images=torch.from_numpy(images)[:, None],
        present=torch.from_numpy(present),
        positions=torch.from_numpy(positions),
        seed=int(seed),
        p=float(p),
    )


# ---------------------------------------------------------------------------------------------- counter
@dataclass(frozen=True)
class Component:
    """One connected component of a thresholded image.

    ``kind`` is a name from :data:`SHAPES` or ``"unrecognised"``; ``column`` (0, 1, 2) is the column holding
    the centroid; ``centroid`` is (x, y) in pixels; ``bbox`` is (x_min, y_min, x_max, y_max), inclusive;
    ``fill`` is area / bbox area (square 1.0, pentagon 0.78, triangle 0.55 for the stencils); ``nearest`` is
    the closest stencil and ``mismatch`` the number of pixels in which the component and that stencil differ
    at their best integer alignment (0 for a perfect shape)."""

    kind: str
    column: int
    area: int
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    fill: float
    nearest: str
    mismatch: int


@dataclass(frozen=True)
class ShapeReport:
    """What the counter found in one image: its components (specks excluded), left to right, and how many
    specks (components smaller than ``min_area``) it ignored."""

    components: tuple[Component, ...]
    n_specks: int

    @property
    def shapes(self) -> tuple[Component, ...]:
        """The recognised components."""
        return tuple(c for c in self.components if c.kind != "unrecognised")

    @property
    def n_unrecognised(self) -> int:
        """How many components matched no shape."""
        return sum(c.kind == "unrecognised" for c in self.components)

    @property
    def counts(self) -> tuple[int, int, int]:
        """How many triangles, squares, pentagons were recognised."""
        kinds = [c.kind for c in self.components]
        return tuple(kinds.count(s) for s in SHAPES)  # type: ignore[return-value]


def _check_images(images: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Check a batch's type and shape, (N, 1, S, S) or (N, S, S), and return it as (N, S, S) (a view)."""
    if not isinstance(images, (Tensor, np.ndarray)):
        raise TypeError(f"images must be a torch.Tensor or numpy array, got {type(images).__name__}")
    shape = tuple(images.shape)
    x = images[:, 0] if len(shape) == 4 and shape[1] == 1 else images
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] != x.shape[2] or x.shape[1] < _CONTENT:
        raise ValueError(
            f"images must have shape (N, 1, 64, 64) or (N, 64, 64) (any square size >= {_CONTENT} works), "
            f"got {shape}; add a batch axis to a single image with images[None]"
        )
    return x


def _binarise(images: Tensor | np.ndarray, threshold: float) -> np.ndarray:
    """Check the values of a chunk of images (N, S, S) in [0, 1] and threshold them -> (N, S, S) bool."""
    if isinstance(images, Tensor):
        x = images.detach().to("cpu", torch.float32).numpy()
    else:
        x = np.asarray(images, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    # Images in [0, 1] are mostly background near 0; an average below -0.25 means [-1, 1] model outputs
    # (background at -1), a maximum above 5 means 8-bit images. Noise may stray outside [0, 1]; that is fine.
    if float(x.mean()) < -0.25:
        raise ValueError(
            f"images must be in [0, 1] but average {float(x.mean()):.3g}: they look like model outputs in "
            "[-1, 1]; map them with from_model_range(x)"
        )
    if float(x.max()) > 5.0:
        raise ValueError(f"images must be in [0, 1] but reach {float(x.max()):.3g}; divide 8-bit images by 255")
    return x > threshold


@cache
def _templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All stencils at all shifts in {-1, 0, 1}^2, placed in a (17, 17) window so that their centroid sits
    where :func:`count_shapes` puts a component's centroid. Returns (flat windows (27, 289) float32,
    shape index (27,), area (27,))."""
    side = 2 * _WINDOW + 1
    windows, kinds, areas = [], [], []
    for k, stencil in enumerate(_stencils()):
        cx, cy = _centroid(stencil)
        ox, oy = math.floor(_WINDOW - cx + 0.5), math.floor(_WINDOW - cy + 0.5)
        for sy in (-1, 0, 1):
            for sx in (-1, 0, 1):
                w = np.zeros((side, side), dtype=np.float32)
                h_, w_ = stencil.shape
                assert 0 <= oy + sy and oy + sy + h_ <= side and 0 <= ox + sx and ox + sx + w_ <= side
                w[oy + sy : oy + sy + h_, ox + sx : ox + sx + w_] = stencil
                windows.append(w.ravel())
                kinds.append(k)
                areas.append(int(stencil.sum()))
    return np.stack(windows), np.asarray(kinds), np.asarray(areas)


def count_shapes(
    images: Tensor | np.ndarray, *, threshold: float = 0.5, min_area: int = 6, max_mismatch: int = 4
) -> list[ShapeReport]:
    """Find and classify the shapes in a batch of images (N, 1, S, S) or (N, S, S), values in [0, 1], S >= 63
    (64 for the data set). Returns one :class:`ShapeReport` per image.

    Pixels above ``threshold`` are on; 8-connected components smaller than ``min_area`` pixels are specks and
    only counted. Every other component is compared with the three stencils, aligned by centroid and then by
    the best shift in {-1, 0, 1}^2, by the number of pixels in which the two differ (the symmetric
    difference). It is the nearest stencil's shape when that number is at most ``max_mismatch`` and no other
    stencil is as near; otherwise it is "unrecognised". The closest two stencils (square and pentagon) differ
    in 10 pixels, so the default 4 can never accept one component as two shapes; a component whose area is
    more than 4 px from 64-70 (a blob, two merged shapes, a fragment) is always unrecognised."""
    min_area = positive_int(min_area, "min_area")
    number_parameter(max_mismatch, "max_mismatch", int, at_least=0)
    threshold = number_parameter(threshold, "threshold", above=0, below=1)
    x = _check_images(images)
    reports: list[ShapeReport] = []
    for start in range(0, x.shape[0], _COUNT_CHUNK):  # bounded memory for any number of images
        reports += _count_chunk(_binarise(x[start : start + _COUNT_CHUNK], threshold), min_area, max_mismatch)
    return reports


def _count_chunk(on: np.ndarray, min_area: int, max_mismatch: int) -> list[ShapeReport]:
    """:func:`count_shapes` on thresholded images (N, S, S) bool."""
    n, size = on.shape[0], on.shape[1]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity within an image, none across the batch axis
    labels, m = ndimage.label(on, structure=structure)
    if m == 0:
        return [ShapeReport((), 0) for _ in range(n)]

    img, yy, xx = np.nonzero(on)  # only the on pixels: ~2% of a batch
    lab = labels[img, yy, xx] - 1
    area = np.bincount(lab, minlength=m)
    cy = np.bincount(lab, yy, minlength=m) / area
    cx = np.bincount(lab, xx, minlength=m) / area
    image_of = np.zeros(m, dtype=np.int64)
    image_of[lab] = img
    box = np.empty((4, m), dtype=np.int64)  # x_min, y_min, x_max, y_max
    box[:2], box[2:] = size, -1
    np.minimum.at(box[0], lab, xx)
    np.minimum.at(box[1], lab, yy)
    np.maximum.at(box[2], lab, xx)
    np.maximum.at(box[3], lab, yy)
    specks = np.bincount(image_of[area < min_area], minlength=n)

    # compare the real components with every shifted stencil in (17, 17) windows around their centroids
    big = np.flatnonzero(area >= min_area)
    offsets = np.arange(-_WINDOW, _WINDOW + 1)
    wy = np.floor(cy[big] + 0.5).astype(np.int64)[:, None] + offsets  # (M, 17) rows of each window
    wx = np.floor(cx[big] + 0.5).astype(np.int64)[:, None] + offsets
    inside = ((wy >= 0) & (wy < size))[:, :, None] & ((wx >= 0) & (wx < size))[:, None, :]
    windows = labels[image_of[big, None, None], wy.clip(0, size - 1)[:, :, None], wx.clip(0, size - 1)[:, None, :]]
    windows = ((windows == (big + 1)[:, None, None]) & inside).reshape(len(big), -1).astype(np.float32)
    tmpl, tmpl_kind, tmpl_area = _templates()
    inter = np.rint(windows @ tmpl.T).astype(np.int64)  # (M, 27) overlaps
    diff = area[big, None] + tmpl_area[None, :] - 2 * inter
    per_kind = np.stack([diff[:, tmpl_kind == k].min(1) for k in range(3)], axis=1)  # (M, 3)
    best = per_kind.argmin(1)
    best_diff = per_kind.min(1)
    unique = (per_kind == best_diff[:, None]).sum(1) == 1
    recognised = unique & (best_diff <= max_mismatch)

    found: list[list[Component]] = [[] for _ in range(n)]
    for j, c in enumerate(big):
        x_min, y_min, x_max, y_max = (int(v) for v in box[:, c])
        found[image_of[c]].append(
            Component(
                kind=SHAPES[best[j]] if recognised[j] else "unrecognised",
                column=min(int(cx[c] // COLUMN_WIDTH), 2),
                area=int(area[c]),
                centroid=(float(cx[c]), float(cy[c])),
                bbox=(x_min, y_min, x_max, y_max),
                fill=float(area[c]) / ((x_max - x_min + 1) * (y_max - y_min + 1)),
                nearest=SHAPES[best[j]],
                mismatch=int(best_diff[j]),
            )
        )
    return [
        ShapeReport(tuple(sorted(comps, key=lambda c: c.centroid)), int(specks[i])) for i, comps in enumerate(found)
    ]


# ---------------------------------------------------------------------------------------------- taxonomy
def _check_report(report: ShapeReport) -> None:
    if not isinstance(report, ShapeReport):
        raise TypeError(f"report must be a ShapeReport (from count_shapes), got {type(report).__name__}")


def classify_image(report: ShapeReport) -> str:
    """Label one image's report with a name from :data:`LABELS`, the first that applies:

    ``"malformed"``: a component matches no shape, or no shape was found at all (training images are never
    blank); ``"duplicated"``: a shape occurs more than once anywhere in the image (the paper's repeated
    shapes); ``"misplaced"``: a shape's centroid lies outside its own column (triangle 0, square 1,
    pentagon 2); ``"valid"``: otherwise. Malformed comes first because an unrecognised component may hide
    shapes, so the other two checks cannot be trusted; duplicated comes before misplaced because a repeated
    shape is the hallucination the paper counts, whatever column its copies land in."""
    _check_report(report)
    shapes = report.shapes
    if report.n_unrecognised > 0 or not shapes:
        return "malformed"
    if max(report.counts) > 1:
        return "duplicated"
    if any(c.column != SHAPES.index(c.kind) for c in shapes):
        return "misplaced"
    return "valid"


#: Least area (pixels) of a component :func:`blobs_per_column` counts: half the smallest shape (the 64-px square).
SHAPE_SIZED = 32


def _shape_sized(report: ShapeReport, min_area: int) -> list[Component]:
    """The report's components of at least ``min_area`` pixels ("blobs"), whatever their outline."""
    _check_report(report)
    min_area = positive_int(min_area, "min_area")
    return [c for c in report.components if c.area >= min_area]


def blobs_per_column(report: ShapeReport, min_area: int = SHAPE_SIZED) -> tuple[int, int, int]:
    """How many components of at least ``min_area`` pixels have their centroid in each column, whatever
    their outline: a reading of an image by position and size alone, which does not need the outlines to
    match a stencil (a small model's soft-edged shapes rarely match within :func:`count_shapes`'s
    ``max_mismatch``)."""
    cols = [c.column for c in _shape_sized(report, min_area)]
    return cols.count(0), cols.count(1), cols.count(2)


def repeated_shape(report: ShapeReport, min_area: int = SHAPE_SIZED) -> bool:
    """Whether some column holds two or more shape-sized blobs (:func:`blobs_per_column`): a repeated shape
    read by position and size alone. A real image holds at most one shape per column, so this is never
    true of the data set; two fragments of one broken shape count only if each has ``min_area`` pixels."""
    return max(blobs_per_column(report, min_area)) > 1


def repeated_same_shape(report: ShapeReport, min_area: int = SHAPE_SIZED) -> bool:
    """Whether some column holds two or more shape-sized blobs (:func:`repeated_shape`) of which two are
    nearest the same stencil: a repeated shape as in the paper's Fig. 1, rather than a shape that strayed into
    its neighbour's column. By position, size and nearest stencil, not by an exact outline match."""
    blobs = [(c.column, c.nearest) for c in _shape_sized(report, min_area)]
    return len(set(blobs)) < len(blobs)  # two blobs in one column nearest the same stencil


def _reports(images: Tensor | np.ndarray | Sequence[ShapeReport], counter_kwargs: dict) -> list[ShapeReport]:
    if isinstance(images, (list, tuple)) and all(isinstance(r, ShapeReport) for r in images):
        if counter_kwargs:
            raise ValueError("counter options apply to images, not to reports that were already counted")
        return list(images)
    return count_shapes(images, **counter_kwargs)


def repeated_shapes(images: Tensor | np.ndarray | Sequence[ShapeReport], min_area: int = SHAPE_SIZED) -> Tensor:
    """:func:`repeated_shape` for a batch -- the label chapters 5-7 give a generated Simple Shapes image: images
    (N, 1, S, S) / (N, S, S) in [0, 1] (counted with :func:`count_shapes`) or reports already counted -> (N,) bool."""
    return torch.tensor([repeated_shape(r, min_area) for r in _reports(images, {})], dtype=torch.bool)


def classify_images(images: Tensor | np.ndarray | Sequence[ShapeReport], **counter_kwargs) -> list[str]:
    """One label from :data:`LABELS` per image, for images (N, 1, S, S) / (N, S, S) in [0, 1] (counted with
    :func:`count_shapes` and ``counter_kwargs``) or for a list of reports already counted."""
    return [classify_image(r) for r in _reports(images, counter_kwargs)]


def invalid_rate(
    images: Tensor | np.ndarray | Sequence[ShapeReport], **counter_kwargs
) -> tuple[float, dict[str, int]]:
    """Fraction of images that are not "valid", and the number of images per label (every name in
    :data:`LABELS`, zeros included). Takes images (N, 1, S, S) / (N, S, S) in [0, 1] or a list of reports."""
    labels = classify_images(images, **counter_kwargs)
    if not labels:
        raise ValueError("no images to rate")
    counts = {name: labels.count(name) for name in LABELS}
    return 1.0 - counts["valid"] / len(labels), counts

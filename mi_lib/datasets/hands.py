"""Hands: synthetic hands with a known number of fingers, a classical finger counter, and the real 11k Hands.

The paper's Fig. 5 trains ADM on 5,000 images of 11k Hands and finds generated hands with extra or missing
fingers. A finger count is the label that tells an in-support hand from a hallucinated one, so this module
provides data whose count is known by construction (:func:`make_hands`), a counter that needs no learned model
(:func:`count_fingers`), and a loader for the real photographs (:func:`load_11k_hands`).

Synthetic hands are binary (0/1, no anti-aliasing) so that the count is exact: a filled ellipse (the palm) and
capsules (the fingers) fanning out from its centre. Neighbouring fingers may touch near the palm, as real
fingers do, but are at least 2 px apart (scaled by size/64) over the last 4 local units (~4 px at size 64) of
the shorter one, so in the raster the nearest lit pixels of two neighbours are never adjacent. The counter reads
a bright hand on a dark background; the real photographs are a dark hand on white (invert them first).
"""

from __future__ import annotations

import math
import urllib.request
import zipfile
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ..params import number_parameter, positive_int

__all__ = [
    "MAX_FINGERS", "HANDS_11K_URL", "HandsDataset", "make_hands", "count_fingers", "finger_histogram",
    "miscount_rate", "load_11k_hands"
]

#: Most fingers :func:`make_hands` draws on one hand.
MAX_FINGERS = 8

#: The images zip (``Hands.zip``, ~633 MB, 11,076 JPEGs of 1600x1200) behind the "direct download link" in the
#: README of the author's repository mahmoudnafifi/11K-Hands; project page https://sites.google.com/view/11khands.
#: Google Drive answers large files through this host; ``confirm=t`` skips its virus-scan page.
HANDS_11K_URL = (
    "https://drive.usercontent.google.com/download?id=1KcMYcNJgtK1zZvfl_9sTqnyBUTri2aP2&export=download&confirm=t"
)

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity for every labelling here

# Geometry of a synthetic hand in "local units" (pixels of a 64-px image at scale 1), drawn uniformly.
_SCALE = (0.9, 1.08)
_PALM_HALF_WIDTH = (8.5, 10.5)
_PALM_HALF_HEIGHT = (8.0, 10.0)
_FINGER_RADIUS = (1.7, 2.2)
_FINGER_LENGTH = (8.0, 13.0)  # beyond the palm's edge, to the end of the capsule's axis
_SPACING = (0.46, 0.54)  # radians between neighbouring fingers, jittered +-7% per gap
_MAX_SPAN = 3.2  # radians from first to last finger; wider fans are squeezed (and fingers then lengthened)
_FAN_OFFSET = 0.08  # radians, +- around "up"
_ROTATION = math.radians(20.0)
_GAP = 2.0  # px at size 64 between neighbouring fingers near their tips
_TIP_ZONE = 4.0  # local units: the separated stretch at the end of the shorter finger
_MARGIN = 1.5  # px kept clear at the border (pixel centres), so the border row/column is always 0
_N_GLOBAL = 9  # uniforms per image before the per-finger ones


@dataclass(frozen=True)
class HandsDataset:
    """Synthetic hands: ``images`` (n, 1, size, size) float32 in {0, 1} and ``n_fingers`` (n,) long."""

    images: Tensor
    n_fingers: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def _finger_counts(n_fingers: int | Sequence[int] | Set[int], n: int, u: np.ndarray) -> np.ndarray:
    """Per-image finger counts (n,) from an int, a set to draw from (uniformly, with column ``u``) or one per image."""
    if isinstance(n_fingers, (int, np.integer)) and not isinstance(n_fingers, bool):
        counts = np.full(n, int(n_fingers))
    elif isinstance(n_fingers, Set):
        choices = sorted(n_fingers)
        if not choices:
            raise ValueError("n_fingers must not be an empty set")
        counts = np.asarray(choices)[np.minimum((u * len(choices)).astype(np.int64), len(choices) - 1)]
    else:
        try:
            counts = n_fingers.cpu().numpy() if isinstance(n_fingers, Tensor) else np.asarray(n_fingers)
        except (TypeError, ValueError) as err:
            raise ValueError(f"n_fingers must be an int, a set of ints or one int per image, got {n_fingers!r}") from err
        if counts.shape != (n,):
            raise ValueError(
                f"n_fingers as a sequence gives one count per image and must have length n={n}, got shape "
                f"{counts.shape}; pass a set, e.g. {{4, 5, 6}}, to draw counts at random"
            )
    if counts.dtype.kind not in "iu" and not (counts.dtype.kind == "f" and np.all(counts == np.round(counts))):
        raise ValueError(f"finger counts must be integers, got {n_fingers!r}")
    counts = counts.astype(np.int64)
    if counts.min() < 1 or counts.max() > MAX_FINGERS:
        raise ValueError(f"finger counts must be in 1..{MAX_FINGERS}, got values from {counts.min()} to {counts.max()}")
    return counts


def _uniform(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _hand_geometry(u: np.ndarray, counts: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Map uniforms (n, P) to hand parameters; enforce the tip gap and place the hand inside the frame."""
    n, F = len(counts), MAX_FINGERS
    s = _uniform(u[:, 0], _SCALE)
    s_px = s * size / 64.0
    a, b = _uniform(u[:, 1], _PALM_HALF_WIDTH), _uniform(u[:, 2], _PALM_HALF_HEIGHT)
    spacing = _uniform(u[:, 3], _SPACING)
    offset = _uniform(u[:, 4], (-_FAN_OFFSET, _FAN_OFFSET))
    theta = _uniform(u[:, 5], (-_ROTATION, _ROTATION))
    per = u[:, _N_GLOBAL:].reshape(n, F, 3)
    radius = _uniform(per[:, :, 0], _FINGER_RADIUS)
    length = _uniform(per[:, :, 1], _FINGER_LENGTH)
    present = np.arange(F)[None, :] < counts[:, None]  # (n, F)

    # angles from "up", clockwise; gaps[:, j] sits between finger j and j + 1
    gaps = spacing[:, None] * (0.93 + 0.14 * per[:, : F - 1, 2]) * present[:, 1:]
    span = gaps.sum(1)
    gaps *= np.minimum(1.0, _MAX_SPAN / np.maximum(span, 1e-12))[:, None]
    span = gaps.sum(1)
    phi = offset[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, 1)], 1) - span[:, None] / 2

    edge = 1.0 / np.sqrt((np.sin(phi) / a[:, None]) ** 2 + (np.cos(phi) / b[:, None]) ** 2)
    tip = edge + length  # distance from the palm centre to the end of each finger's axis
    # Two axes from a common origin at angle g are >= 2 rho sin(g / 2) apart beyond radius rho, so the capsules
    # are >= gap apart beyond rho_sep; lengthen both fingers until that holds over their last _TIP_ZONE units.
    gap_local = _GAP / s
    for j in range(F - 1):
        pair = present[:, j + 1]
        rho_sep = (gap_local + radius[:, j] + radius[:, j + 1]) / (2 * np.sin(np.maximum(gaps[:, j], 1e-6) / 2))
        need = np.where(pair, rho_sep + _TIP_ZONE, 0.0)
        tip[:, j] = np.maximum(tip[:, j], need)
        tip[:, j + 1] = np.maximum(tip[:, j + 1], need)

    # tip positions in pixels relative to the palm centre, after rotation by theta and scaling
    tx_l, ty_l = tip * np.sin(phi), -tip * np.cos(phi)
    c, sn = np.cos(theta)[:, None], np.sin(theta)[:, None]
    tx, ty = s_px[:, None] * (c * tx_l - sn * ty_l), s_px[:, None] * (sn * tx_l + c * ty_l)
    rad_px = s_px[:, None] * radius
    big = np.where(present, 1.0, np.nan)
    half_x = s_px * np.sqrt((a * np.cos(theta)) ** 2 + (b * np.sin(theta)) ** 2)
    half_y = s_px * np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2)
    x_lo = np.minimum(-half_x, np.nanmin(big * (tx - rad_px), 1))
    x_hi = np.maximum(half_x, np.nanmax(big * (tx + rad_px), 1))
    y_lo = np.minimum(-half_y, np.nanmin(big * (ty - rad_px), 1))
    y_hi = np.maximum(half_y, np.nanmax(big * (ty + rad_px), 1))
    cx_lo, cx_hi = _MARGIN - x_lo, size - 1 - _MARGIN - x_hi
    cy_lo, cy_hi = _MARGIN - y_lo, size - 1 - _MARGIN - y_hi
    if bool((cx_lo > cx_hi).any() or (cy_lo > cy_hi).any()):  # cannot happen with the ranges above
        raise RuntimeError("internal error: a synthetic hand does not fit in the frame")
    cx = cx_lo + u[:, 6] * (cx_hi - cx_lo)
    cy = cy_lo + u[:, 7] * (cy_hi - cy_lo)
    return dict(cx=cx, cy=cy, s_px=s_px, theta=theta, a=a, b=b, phi=phi, tip=tip, radius=radius, present=present)


def _rasterise(g: dict[str, np.ndarray], size: int, chunk: int = 128) -> np.ndarray:
    """Binary images (n, size, size) float32: pixel centres inside the palm ellipse or a finger capsule."""
    n = len(g["cx"])
    out = np.empty((n, size, size), dtype=np.float32)
    grid = np.arange(size, dtype=np.float64)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        k = int(g["present"][sl].sum(1).max())
        cos_t, sin_t = np.cos(g["theta"][sl])[:, None, None], np.sin(g["theta"][sl])[:, None, None]
        dx = grid[None, None, :] - g["cx"][sl, None, None]  # (B, 1, W)
        dy = grid[None, :, None] - g["cy"][sl, None, None]  # (B, H, 1)
        s = g["s_px"][sl, None, None]
        lx = (cos_t * dx + sin_t * dy) / s  # (B, H, W) local coordinates (inverse rotation)
        ly = (-sin_t * dx + cos_t * dy) / s
        inside = (lx / g["a"][sl, None, None]) ** 2 + (ly / g["b"][sl, None, None]) ** 2 <= 1.0
        phi, tip = g["phi"][sl, :k, None, None], g["tip"][sl, :k, None, None]  # (B, k, 1, 1)
        ux, uy = np.sin(phi), -np.cos(phi)
        lx4, ly4 = lx[:, None], ly[:, None]
        t = np.clip(lx4 * ux + ly4 * uy, 0.0, tip)  # projection onto each finger's axis, from the palm centre
        d2 = (lx4 - t * ux) ** 2 + (ly4 - t * uy) ** 2
        r = np.where(g["present"][sl, :k], g["radius"][sl, :k], -1.0)[:, :, None, None]
        inside |= (d2 <= r * np.abs(r)).any(1)
        out[sl] = inside
    return out


def make_hands(
    n: int,
    seed: int,
    *,
    n_fingers: int | Sequence[int] | Set[int] = 5,
    size: int = 64,
) -> HandsDataset:
    """Draw ``n`` binary images of a hand (see the module docstring), (n, 1, size, size) float32 in {0, 1}, with
    their finger counts (n,) long.

    Seeded variation in scale, palm shape, finger width, length and spread, fan direction, rotation (+-20
    degrees) and position; the hand never touches the border, and :func:`count_fingers` is exact on these
    images. ``n_fingers``: an int for every image, a set to draw from uniformly, or a sequence with one count
    per image; counts in 1..MAX_FINGERS. Image k depends only on (seed, k, its count): a larger ``n`` extends
    the dataset without changing its first images. ``size`` >= 48 (below that the gap could no longer
    separate the fingers)."""
    n = positive_int(n, "n")
    size = positive_int(size, "size")
    if size < 48:
        raise ValueError(f"size must be >= 48 so neighbouring fingers stay apart, got {size}")
    number_parameter(seed, "seed", int)
    u = np.random.default_rng(int(seed)).random((n, _N_GLOBAL + 3 * MAX_FINGERS))
    counts = _finger_counts(n_fingers, n, u[:, 8])
    images = _rasterise(_hand_geometry(u, counts, size), size)
    return HandsDataset(torch.from_numpy(images)[:, None], torch.from_numpy(counts))


# ---------------------------------------------------------------------------------------------- counting
def _as_batch(images: Tensor | np.ndarray) -> np.ndarray:
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1] < 8 or x.shape[2] < 8:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W) with H, W >= 8, got {tuple(x.shape)}")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"images must be numeric, got dtype {x.dtype}")
    return x


def _disk(radius: float) -> np.ndarray:
    k = int(math.floor(radius))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    return xx**2 + yy**2 <= radius**2


def _count_one(hand_mask: np.ndarray) -> int:
    """Finger count of one binary image (H, W); see :func:`count_fingers` for the rule."""
    lab, k = ndimage.label(hand_mask, _EIGHT)
    if k == 0:
        return 0
    biggest = int(np.argmax(np.bincount(lab.ravel())[1:])) + 1
    box = ndimage.find_objects(lab, biggest)[biggest - 1]
    hand = np.pad(lab[box] == biggest, 1)  # the hand's box with a 1-px frame: the image border is background
    depth = ndimage.distance_transform_edt(hand)
    palm_radius = float(depth.max())
    if palm_radius < 2.0:  # a line or a speck: no palm to count from
        return 0
    # 1. palm: what a disk much wider than a finger can sweep, the piece that holds the deepest point
    opened = ndimage.binary_opening(hand, _disk(max(1.5, 0.5 * palm_radius)))
    plab, _ = ndimage.label(opened, _EIGHT)
    centre = np.unravel_index(np.argmax(depth), depth.shape)
    palm = ndimage.binary_fill_holes(plab == plab[centre])
    # 2. fingers: the rest of the hand, more than 1 px from the palm, with its height above the palm
    height = ndimage.distance_transform_edt(~palm)
    fingers = hand & (height > 1.0)
    if not fingers.any():
        return 0
    final, n_comp = ndimage.label(fingers, _EIGHT)
    min_length = 0.3 * palm_radius
    min_area = max(3.0, 0.05 * palm_radius**2)
    # 3. fingertips: peaks of the height that stand >= min_length above where they join a taller peak
    #    (0-dim persistence of the superlevel sets, swept in 1-px steps from the top)
    flat_final = final.ravel()
    by_height = np.flatnonzero(fingers.ravel())
    by_height = by_height[np.argsort(-height.ravel()[by_height], kind="stable")]  # finger pixels, tallest first
    tips = np.zeros(n_comp + 1, dtype=np.int64)
    reps: list[int] = []  # a pixel of each tracked peak (flat index) and its birth height
    births: list[float] = []
    top = float(height.ravel()[by_height[0]])
    levels = [top - i for i in range(int(top - 1.0) + 1) if top - i > 1.0] + [1.0 + 1e-9]
    for level in levels:
        lab, k = ndimage.label(fingers & (height >= level), _EIGHT)
        flat = lab.ravel()
        owner: dict[int, int] = {}  # component label -> index of the peak that survives in it
        alive = [True] * len(reps)
        for i, rep in enumerate(reps):
            comp = int(flat[rep])
            j = owner.get(comp)
            if j is None:
                owner[comp] = i
                continue
            young, old = (i, j) if births[i] < births[j] else (j, i)  # the elder (taller) peak survives
            owner[comp] = old
            alive[young] = False
            if births[young] - level >= min_length:
                tips[flat_final[reps[young]]] += 1
        reps = [r for r, keep in zip(reps, alive) if keep]
        births = [h for h, keep in zip(births, alive) if keep]
        if len(owner) < k:  # new peaks: the tallest pixel of each component without one
            labels_in_order = flat[by_height]
            comps, first = np.unique(labels_in_order, return_index=True)
            for comp, idx in zip(comps.tolist(), first.tolist()):
                if comp and comp not in owner:
                    reps.append(int(by_height[idx]))
                    births.append(float(height.ravel()[by_height[idx]]))
    for rep, birth in zip(reps, births):  # one survivor per component: the finger's own length
        if birth - 1.0 >= min_length:
            tips[flat_final[rep]] += 1
    # 4. fingers fused at the tip have one peak but two stems: count pieces across 2-px bands of height too
    stems = np.zeros(n_comp + 1, dtype=np.int64)
    for level in np.arange(1.0, top, 1.0):
        lab, k = ndimage.label(fingers & (height > level) & (height <= level + 2.0), _EIGHT)
        if k == 0:
            continue
        flat = lab.ravel()
        areas = np.bincount(flat, minlength=k + 1)
        owners = np.zeros(k + 1, dtype=np.int64)
        owners[flat] = flat_final  # every piece lies inside one finger component
        big = owners[1:][areas[1:] >= min_area]
        stems = np.maximum(stems, np.bincount(big, minlength=n_comp + 1))
    return int(np.maximum(tips, stems)[1:].sum())


def count_fingers(images: Tensor | np.ndarray, threshold: float = 0.5) -> Tensor:
    """Count fingers on each image, (N, 1, H, W) or (N, H, W) with values in [0, 1] -> (N,) long, by classical
    image analysis only (no learned model).

    Binarise at ``threshold``, take a 3x3 majority vote (drops isolated noisy pixels, keeps 2-px gaps), keep the
    largest 8-connected component (stray blobs go), and find the palm as its opening with a disk of half the
    hand's largest inscribed radius R (fingers are thinner and vanish). The rest of the hand more than 1 px from
    the palm is the fingers, each pixel with a height = its distance to the palm. A finger is a peak of that
    height standing >= 0.3 R above the point where it joins a taller peak (fingers fused at the base still count
    apart; bumps of a pixel or two do not count). For each fused group the count is at least the most pieces of
    area >= max(3, 0.05 R^2) that one 2-px band of height cuts it into (fingers fused at the tip). An empty
    image, or one whose largest component is thinner than 4 px, gives 0."""
    x = _as_batch(images)
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    mask = x > threshold
    # majority vote over each 3x3 window (a binary median filter): isolated flipped pixels go, and a gap of
    # >= 2 px between fingers stays open
    votes = ndimage.correlate(mask.astype(np.uint8), np.ones((1, 3, 3), dtype=np.uint8), mode="constant")
    counts = [_count_one(m) for m in votes >= 5]
    device = images.device if isinstance(images, Tensor) else torch.device("cpu")
    return torch.tensor(counts, dtype=torch.long, device=device)


def _as_counts(counts: Tensor | Sequence[int]) -> np.ndarray:
    c = counts.detach().cpu().numpy() if isinstance(counts, Tensor) else np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence of ints, got shape {c.shape}")
    if c.dtype.kind not in "iu":
        raise ValueError(f"counts must be integers, got dtype {c.dtype}")
    return c.astype(np.int64)


def finger_histogram(counts: Tensor | Sequence[int]) -> dict[int, int]:
    """How many images have each finger count: counts (N,) -> {count: images}, keys ascending, only counts seen."""
    values, freq = np.unique(_as_counts(counts), return_counts=True)
    return {int(v): int(f) for v, f in zip(values, freq)}


def miscount_rate(counts: Tensor | Sequence[int], expected: int = 5) -> float:
    """Share of images whose finger count differs from ``expected``: counts (N,) -> float in [0, 1]."""
    expected = positive_int(expected, "expected")
    return float(np.mean(_as_counts(counts) != expected))


# ---------------------------------------------------------------------------------------------- 11k Hands
def _hand_files(root: Path) -> list[Path]:
    for folder in (root / "Hands", root):
        files = sorted(p for p in folder.glob("Hand_*.jpg") if p.is_file()) if folder.is_dir() else []
        if files:
            return files
    return []


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (a separate function so tests can stand in for the network)."""
    urllib.request.urlretrieve(url, dest)


def _download_11k(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    part = root / "Hands.zip.part"
    _fetch(HANDS_11K_URL, part)
    if not zipfile.is_zipfile(part):
        part.unlink(missing_ok=True)
        raise RuntimeError(
            f"the download from {HANDS_11K_URL} is not a zip file (Google Drive may have answered with a quota or "
            "confirmation page); download Hands.zip by hand from https://sites.google.com/view/11khands and unzip it "
            f"into {root}"
        )
    out = root / "Hands"
    out.mkdir(exist_ok=True)
    with zipfile.ZipFile(part) as zf:
        for info in zf.infolist():
            name = Path(info.filename).name  # flatten, so no member can write outside root/Hands
            if not info.is_dir() and name.startswith("Hand_") and name.lower().endswith(".jpg"):
                (out / name).write_bytes(zf.read(info))
    part.unlink()


def load_11k_hands(root: str | Path, *, size: int = 64, n: int | None = None, download: bool = False) -> Tensor:
    """The real 11k Hands photographs (Afifi 2019) as grayscale images (N, 1, size, size) float32 in [0, 1].

    Reads ``Hand_*.jpg`` from ``root/Hands`` (the layout of the official zip) or from ``root`` itself, in sorted
    file order, the first ``n`` if given. Each image is converted to grayscale, centre-cropped to a square and
    resized (bilinear, antialiased) to size x size; the hand stays dark on a light background (no inversion).
    ``download=True`` fetches and unpacks the official zip (:data:`HANDS_11K_URL`, ~633 MB) when no image is
    found. Missing files without ``download`` raise FileNotFoundError saying how to get them."""
    from PIL import Image  # pillow comes with matplotlib

    size = positive_int(size, "size")
    if n is not None:
        n = positive_int(n, "n")
    root = Path(root)
    files = _hand_files(root)
    if not files and download:
        _download_11k(root)
        files = _hand_files(root)
    if not files:
        raise FileNotFoundError(
            f"no 11k Hands images (Hand_*.jpg) in {root} or {root / 'Hands'}. Call load_11k_hands(root, "
            f"download=True), or download Hands.zip from https://sites.google.com/view/11khands ({HANDS_11K_URL}) "
            f"and unzip it into {root}"
        )
    if n is not None:
        if n > len(files):
            raise ValueError(f"asked for n={n} images but {root} holds only {len(files)}")
        files = files[:n]
    out = np.empty((len(files), size, size), dtype=np.float32)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            img.draft("L", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that still covers size
            gray = img.convert("L")
        w, h = gray.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        square = gray.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(square, dtype=np.float32) / 255.0
    return torch.from_numpy(out)[:, None]

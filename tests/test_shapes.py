import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from mi_lib import shapes
from mi_lib.datasets.shapes import (
    COLUMN_WIDTH,
    SHAPE_SIZED,
    blobs_per_column,
    repeated_shape,
    repeated_shapes,
    LABELS,
    SHAPES,
    Component,
    ShapeReport,
    classify_image,
    classify_images,
    count_shapes,
    from_model_range,
    invalid_rate,
    make_shapes,
    shape_stencil,
    to_model_range,
)
from mi_lib.measure.metrics import wilson_interval

AREA = {"triangle": 66, "square": 64, "pentagon": 70}


@pytest.fixture(scope="module")
def real():
    return make_shapes(3000, 11)


def blank(n: int = 1) -> torch.Tensor:
    return torch.zeros(n, 1, 64, 64)


def paste(images: torch.Tensor, kind: str, x0: int, y0: int, i: int = 0) -> torch.Tensor:
    """Draw a stencil with its top-left corner at (x0, y0) into image i (union with what is there)."""
    s = shape_stencil(kind)
    h, w = s.shape
    images[i, 0, y0 : y0 + h, x0 : x0 + w] = torch.maximum(images[i, 0, y0 : y0 + h, x0 : x0 + w], s.float())
    return images


def label_of(images: torch.Tensor) -> str:
    (report,) = count_shapes(images)
    return classify_image(report)


# ------------------------------------------------------------------------------------------- stencils
def test_stencils_match_the_spec():
    tri, sq, pen = (shape_stencil(k) for k in SHAPES)
    assert {k: int(shape_stencil(k).sum()) for k in SHAPES} == AREA
    assert abs(AREA["triangle"] - 65) <= 2 and abs(AREA["pentagon"] - 70) <= 2
    assert sq.shape == (8, 8) and bool(sq.all())
    # triangle: apex down (row widths never grow going down, full top row, 1-2 px at the bottom), symmetric
    widths = tri.sum(1)
    assert tri.shape == (10, 12) and bool((widths[1:] <= widths[:-1]).all()) and widths[0] == 12 and widths[-1] <= 2
    assert torch.equal(tri, tri.flip(1))
    # pentagon: circumradius 5 -> about 10 px across; mirror-symmetric top/bottom, a vertex pointing right
    heights = pen.sum(0)
    assert pen.shape == (10, 9) and torch.equal(pen, pen.flip(0))
    assert heights[-1] <= 2 and heights[0] >= 6  # a vertex at the right, a flat edge at the left


def test_stencils_are_far_apart():
    # the counter's guarantee: two stencils differ in more than 2 * max_mismatch (8) pixels at every shift
    def min_difference(a: np.ndarray, b: np.ndarray) -> int:
        best = 10**9
        for dy in range(-12, 13):
            for dx in range(-12, 13):
                A = np.zeros((40, 40), bool)
                B = np.zeros((40, 40), bool)
                A[14 : 14 + a.shape[0], 14 : 14 + a.shape[1]] = a
                B[14 + dy : 14 + dy + b.shape[0], 14 + dx : 14 + dx + b.shape[1]] = b
                best = min(best, int((A ^ B).sum()))
        return best

    masks = [shape_stencil(k).numpy() for k in SHAPES]
    d = {(i, j): min_difference(masks[i], masks[j]) for i in range(3) for j in range(i + 1, 3)}
    assert min(d.values()) == d[(1, 2)] == 10  # square vs pentagon: the closest pair
    assert min(d.values()) > 2 * 4


# ------------------------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_prefix_stable():
    a, b = make_shapes(1500, 3), make_shapes(1500, 3)
    assert torch.equal(a.images, b.images) and torch.equal(a.present, b.present)
    assert torch.equal(a.positions.nan_to_num(-1.0), b.positions.nan_to_num(-1.0))
    c = make_shapes(1500, 4)
    assert not torch.equal(a.images[:10], c.images[:10]) and not torch.equal(a.present, c.present)
    small = make_shapes(40, 3)  # the first 40 images do not depend on n
    assert torch.equal(small.images, a.images[:40]) and torch.equal(small.present, a.present[:40])
    assert len(a) == 1500 and a.seed == 3 and a.p == 0.5


def test_generator_pixels_areas_and_columns(real):
    x, present, pos = real.images, real.present, real.positions
    assert x.shape == (3000, 1, 64, 64) and x.dtype == torch.float32
    assert bool(((x == 0) | (x == 1)).all())
    assert present.shape == (3000, 3) and present.dtype == torch.bool and bool(present.any(1).all())
    assert bool(x[:, 0, 63, :].eq(0).all()) and bool(x[:, 0, :, 63].eq(0).all())  # padding stays empty
    for k, kind in enumerate(SHAPES):
        col = x[:, 0, :, k * COLUMN_WIDTH : (k + 1) * COLUMN_WIDTH]
        assert torch.equal(col.sum((1, 2)), present[:, k].float() * AREA[kind])  # exact area, or nothing
        # 1-px margin inside the column: its edge pixels and its first/last rows are always empty
        assert col[:, :, 0].sum() == 0 and col[:, :, -1].sum() == 0
        assert col[:, 0, :].sum() == 0 and col[:, 62, :].sum() == 0
        # positions: NaN iff absent, otherwise the pixel centroid of the column's shape
        assert torch.equal(pos[:, k].isnan().any(1), ~present[:, k])
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(COLUMN_WIDTH * 1.0), indexing="ij")
        on = present[:, k]
        cx = (col[on] * (xs + k * COLUMN_WIDTH)).sum((1, 2)) / AREA[kind]
        cy = (col[on] * ys).sum((1, 2)) / AREA[kind]
        assert torch.allclose(pos[on, k], torch.stack([cx, cy], 1), atol=1e-4)
        # every allowed horizontal position is used (uniform over the column, not a fixed spot)
        width = shape_stencil(kind).shape[1]
        assert pos[on, k, 0].unique().numel() == COLUMN_WIDTH - 2 - width + 1


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_presence_frequency_matches_p(p):
    ds = make_shapes(6000, 7, p=p)
    kept = 1 - (1 - p) ** 3  # blank images are redrawn, so presence is conditioned on "not blank"
    freq = ds.present.double().mean(0)
    se = math.sqrt((p / kept) * (1 - p / kept) / 6000)
    assert bool(((freq - p / kept).abs() < 4.5 * se).all()), freq
    all_three = ds.present.all(1).double().mean().item()
    assert abs(all_three - p**3 / kept) < 4.5 * math.sqrt(p**3 / kept / 6000)
    assert bool(make_shapes(50, 0, p=1.0).present.all())


def test_model_range_round_trip(real):
    y = to_model_range(real.images)
    assert torch.equal(y.unique(), torch.tensor([-1.0, 1.0]))
    assert torch.equal(from_model_range(y), real.images)
    assert torch.equal(to_model_range(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))
    back = from_model_range(torch.tensor([-3.0, -1.0, 0.0, 1.0, 1.5]))  # clamped to [0, 1]
    assert torch.equal(back, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


# ------------------------------------------------------------------------------------------- counter
def test_counter_reads_every_real_image_exactly(real):
    reports = count_shapes(real.images)
    assert len(reports) == 3000
    counts = torch.tensor([r.counts for r in reports])
    assert torch.equal(counts, real.present.long())
    for i, r in enumerate(reports):
        assert r.n_specks == 0 and r.n_unrecognised == 0
        for c in r.shapes:
            k = SHAPES.index(c.kind)
            assert c.column == k and c.area == AREA[c.kind] and c.mismatch == 0
            assert c.centroid == pytest.approx(tuple(real.positions[i, k].tolist()), abs=1e-4)
    assert set(classify_images(reports)) == {"valid"}
    rate, by_label = invalid_rate(real.images)
    assert rate == 0.0 and by_label == {"malformed": 0, "duplicated": 0, "misplaced": 0, "valid": 3000}
    # the (N, 64, 64) layout and numpy input read the same
    assert count_shapes(real.images[:50, 0].numpy()) == reports[:50]


def test_counting_in_chunks_changes_nothing(real, monkeypatch):
    import mi_lib.datasets.shapes as shapes

    whole = count_shapes(real.images[:50])
    monkeypatch.setattr(shapes, "_COUNT_CHUNK", 7)
    assert count_shapes(real.images[:50]) == whole


def test_component_features():
    x = paste(paste(paste(blank(), "triangle", 3, 5), "square", 30, 40), "pentagon", 45, 20)
    (r,) = count_shapes(x)
    tri, sq, pen = r.components  # left to right
    assert (tri.kind, tri.column, tri.bbox, tri.fill) == ("triangle", 0, (3, 5, 14, 14), pytest.approx(66 / 120))
    assert (sq.kind, sq.column, sq.bbox, sq.fill, sq.centroid) == ("square", 1, (30, 40, 37, 47), 1.0, (33.5, 43.5))
    assert (pen.kind, pen.column, pen.bbox, pen.fill) == ("pentagon", 2, (45, 20, 53, 29), pytest.approx(70 / 90))
    assert classify_image(r) == "valid"


# ------------------------------------------------------------------------------------------- hallucinations
def test_duplicated_shapes():
    x = paste(paste(blank(), "square", 27, 10), "square", 27, 30)  # two squares stacked in column 1
    (r,) = count_shapes(x)
    assert r.counts == (0, 2, 0) and classify_image(r) == "duplicated"
    # a copy in a foreign column is still "duplicated" (it outranks "misplaced")
    x = paste(paste(blank(), "pentagon", 48, 10), "pentagon", 5, 40)
    assert label_of(x) == "duplicated"


def test_blobs_per_column_reads_real_images_as_their_shapes(real):
    reports = count_shapes(real.images[:500])
    assert [blobs_per_column(r) for r in reports] == [tuple(row) for row in real.present[:500].long().tolist()]
    assert not any(repeated_shape(r) for r in reports)


def test_repeated_shape_by_position_and_size_alone():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    x = blank()
    for cy in (15, 40):  # two soft disks (no stencil matches them) stacked in the square's column
        x[0, 0] = torch.maximum(x[0, 0], (((yy - cy) ** 2 + (xx - 31) ** 2) <= 4.6**2).float())
    (r,) = count_shapes(x)
    two_disks = x.clone()
    assert classify_image(r) == "malformed" and blobs_per_column(r) == (0, 2, 0) and repeated_shape(r)
    # one blob per column is not a repetition, and a small fragment beside a shape is not shape-sized
    x = paste(paste(blank(), "triangle", 3, 5), "square", 27, 10)
    x[0, 0, 40:44, 28:32] = 1.0  # a 16-px fragment
    (r,) = count_shapes(x)
    assert blobs_per_column(r) == (1, 1, 0) and not repeated_shape(r)
    assert blobs_per_column(r, min_area=16) == (1, 2, 0) and repeated_shape(r, min_area=16)
    assert SHAPE_SIZED == 32
    # the batched label: images or reports, one bool per image
    stacked = torch.cat([two_disks, x])
    assert repeated_shapes(stacked).tolist() == [True, False]
    assert repeated_shapes(count_shapes(stacked), min_area=16).tolist() == [True, True]


def test_repeated_same_shape_tells_a_repeat_from_a_stray():
    two_squares = paste(paste(blank(), "square", 27, 5), "square", 27, 40)  # the middle column, twice
    square_and_pentagon = paste(paste(blank(), "square", 27, 5), "pentagon", 26, 40)  # a pentagon strayed in
    one_each = paste(paste(blank(), "triangle", 3, 5), "square", 27, 10)
    reports = count_shapes(torch.cat([two_squares, square_and_pentagon, one_each]))
    assert [repeated_shape(r) for r in reports] == [True, True, False]
    assert [shapes.repeated_same_shape(r) for r in reports] == [True, False, False]


def test_blobs_per_column_rejects_bad_input():
    (r,) = count_shapes(paste(blank(), "square", 27, 10))
    with pytest.raises(TypeError, match="ShapeReport"):
        blobs_per_column(blank())
    with pytest.raises(ValueError, match="min_area"):
        blobs_per_column(r, min_area=0)


def test_misplaced_shape():
    x = paste(paste(blank(), "square", 27, 10), "triangle", 46, 30)  # triangle in the pentagon's column
    (r,) = count_shapes(x)
    assert [c.kind for c in r.shapes] == ["square", "triangle"] and r.shapes[1].column == 2
    assert classify_image(r) == "misplaced"


def test_overlapping_shapes_are_one_malformed_blob():
    x = paste(paste(blank(), "square", 26, 20), "pentagon", 30, 24)  # overlapping stencils merge
    (r,) = count_shapes(x)
    assert len(r.components) == 1 and r.components[0].kind == "unrecognised" and classify_image(r) == "malformed"
    # so do touching ones: two squares with no gap form one 8x16 bar
    assert label_of(paste(paste(blank(), "square", 27, 10), "square", 27, 18)) == "malformed"


def test_blob_flipped_shape_and_empty_are_malformed():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disk = blank()
    disk[0, 0] = (((yy - 30) ** 2 + (xx - 31) ** 2) <= 6.2**2).float()
    (r,) = count_shapes(disk)
    assert 110 <= r.components[0].area <= 130 and classify_image(r) == "malformed"
    upside_down = blank()
    upside_down[0, 0, 20:30, 4:16] = shape_stencil("triangle").flip(0).float()  # apex up: not in the data
    assert label_of(upside_down) == "malformed"
    assert label_of(blank()) == "malformed"
    (r,) = count_shapes(blank())
    assert r.components == () and r.n_specks == 0


def test_specks_are_ignored_below_min_area(real):
    x = real.images[:1].clone()
    x[0, 0, 62, 62] = x[0, 0, 62, 63] = 1.0  # a 2-px speck in the corner
    (r,) = count_shapes(x)
    assert r.n_specks == 1 and classify_image(r) == "valid"
    x[0, 0, 60:63, 62:64] = 1.0  # grown to 6 px = min_area: now a real, unrecognised component
    (r,) = count_shapes(x)
    assert r.n_specks == 0 and r.n_unrecognised == 1 and classify_image(r) == "malformed"
    assert classify_image(count_shapes(x, min_area=7)[0]) == "valid"


def test_components_are_8_connected():
    x = paste(blank(), "square", 27, 10)
    x[0, 0, 18, 35] = 1.0  # one pixel touching the square's bottom-right corner diagonally only
    (r,) = count_shapes(x)
    assert r.n_specks == 0 and [(c.kind, c.area, c.mismatch) for c in r.components] == [("square", 65, 1)]


def test_column_is_decided_by_the_centroid():
    # a square straddling the square/pentagon boundary at x = 42 belongs where its centroid lies
    (r,) = count_shapes(paste(blank(), "square", 38, 10))  # x 38..45, centroid x 41.5
    assert r.shapes[0].column == 1 and classify_image(r) == "valid"
    (r,) = count_shapes(paste(blank(), "square", 39, 10))  # x 39..46, centroid x 42.5
    assert r.shapes[0].column == 2 and classify_image(r) == "misplaced"
    (r,) = count_shapes(paste(blank(), "pentagon", 55, 10))  # x 55..63 reaches the padding column
    assert r.shapes[0].column == 2 and classify_image(r) == "valid"


def test_noisy_and_blurred_real_images_stay_valid(real):
    g = torch.Generator().manual_seed(0)
    x = real.images[:1000]
    noisy = x + 0.15 * torch.randn(x.shape, generator=g)  # ~1 flipped pixel in 600
    reports = count_shapes(noisy)
    assert sum(r.n_specks for r in reports) > 1000  # the noise did reach the threshold ...
    assert set(classify_images(reports)) == {"valid"}  # ... and changed no label
    blurred = torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, 1.0, 1.0)))
    reports = count_shapes(blurred)
    assert max(c.mismatch for r in reports for c in r.components) == 4  # corners eroded, within tolerance
    assert set(classify_images(reports)) == {"valid"}


def test_half_pixel_shift_is_malformed_under_the_default_tolerance(real):
    # documented limitation: a shape between two pixel positions thresholds to e.g. an 8x7 square (8 px off)
    x = real.images[:20]
    shifted = (x + x.roll(1, dims=2)) / 2
    assert set(classify_images(shifted)) == {"malformed"}
    reports = count_shapes(shifted, max_mismatch=12)
    assert set(classify_images(reports)) == {"valid"}


# ------------------------------------------------------------------------------------------- taxonomy
def _component(kind: str, column: int) -> Component:
    nearest = kind if kind in SHAPES else "square"
    return Component(kind, column, 64, (column * 21 + 10.0, 30.0), (0, 0, 7, 7), 1.0, nearest, 0 if kind in SHAPES else 30)


@pytest.mark.parametrize(
    "components, label",
    [
        ([("triangle", 0), ("square", 1), ("pentagon", 2)], "valid"),
        ([("square", 1)], "valid"),
        ([("square", 2)], "misplaced"),
        ([("triangle", 0), ("triangle", 0)], "duplicated"),
        ([("triangle", 0), ("triangle", 2)], "duplicated"),  # duplicated > misplaced
        ([("square", 1), ("unrecognised", 1)], "malformed"),
        ([("square", 1), ("square", 1), ("unrecognised", 0)], "malformed"),  # malformed > duplicated
        ([], "malformed"),
    ],
)
def test_classify_image_precedence(components, label):
    assert classify_image(ShapeReport(tuple(_component(k, c) for k, c in components), 0)) == label


def test_invalid_rate_counts_each_label():
    x = blank(5)
    paste(x, "square", 27, 10, i=0)  # valid
    paste(paste(x, "square", 27, 10, i=1), "square", 27, 40, i=1)  # duplicated
    paste(x, "pentagon", 5, 10, i=2)  # misplaced
    # image 3 stays empty: malformed
    paste(paste(x, "triangle", 4, 4, i=4), "pentagon", 48, 30, i=4)  # valid
    assert classify_images(x) == ["valid", "duplicated", "misplaced", "malformed", "valid"]
    rate, counts = invalid_rate(x)
    assert rate == pytest.approx(0.6) and counts == {"malformed": 1, "duplicated": 1, "misplaced": 1, "valid": 2}
    assert list(counts) == list(LABELS)
    assert invalid_rate(count_shapes(x)) == (rate, counts)  # reports counted once can be reused
    with pytest.raises(ValueError, match="already counted"):
        invalid_rate(count_shapes(x), threshold=0.3)


def test_wilson_interval():
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.236593, abs=1e-5), pytest.approx(0.763407, abs=1e-5))
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277540, abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((1 - hi, 1.0))
    lo, hi = wilson_interval(30, 1000, z=2.576)
    assert lo < 0.03 < hi and hi - lo < wilson_interval(3, 100, z=2.576)[1] - wilson_interval(3, 100, z=2.576)[0]


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0, seed=0), "n must be a positive int"),
        (dict(n=2.5, seed=0), "n must be a positive int"),
        (dict(n=10, seed=-1), "seed must be an int >= 0"),
        (dict(n=10, seed=0, p=0.0), r"p must be in \(0, 1\]"),
        (dict(n=10, seed=0, p=1.5), r"p must be in \(0, 1\]"),
        (dict(n=10, seed=0, size=32), "size must be an int >= 63"),
    ],
)
def test_make_shapes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(**kwargs)


@pytest.mark.parametrize(
    "images",
    [torch.zeros(64, 64), torch.zeros(2, 3, 64, 64), torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 64, 65),
     torch.zeros(0, 64, 64)],
    ids=["single-image", "rgb", "small", "not-square", "empty-batch"],
)
def test_count_shapes_rejects_bad_shapes(images):
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 64, 64\) or \(N, 64, 64\)"):
        count_shapes(images)


def test_count_shapes_rejects_bad_values_and_options(real):
    x = real.images[:4]
    with pytest.raises(ValueError, match="NaN"):
        count_shapes(torch.full((1, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="from_model_range"):
        count_shapes(to_model_range(x))
    with pytest.raises(ValueError, match="255"):
        count_shapes(x * 255)
    with pytest.raises(ValueError, match="threshold"):
        count_shapes(x, threshold=1.0)
    with pytest.raises(ValueError, match="min_area"):
        count_shapes(x, min_area=0)
    with pytest.raises(ValueError, match="max_mismatch"):
        count_shapes(x, max_mismatch=-1)
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        count_shapes(x.tolist())
    with pytest.raises(ValueError, match="unknown shape"):
        shape_stencil("circle")
    with pytest.raises(TypeError, match="ShapeReport"):
        classify_image("valid")
    with pytest.raises(ValueError, match="k must be"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n must be"):
        wilson_interval(0, 0)

import dataclasses
import math
import zipfile

import numpy as np
import pytest
import torch
from scipy import ndimage

import mi_lib.datasets.hands as hands_mod
from mi_lib.datasets.hands import (
    HANDS_11K_URL,
    MAX_FINGERS,
    HandsDataset,
    count_fingers,
    finger_histogram,
    miscount_rate,
    load_11k_hands,
    make_hands,
)

# ------------------------------------------------------------------ hand-built images (independent of make_hands)


def _capsule(img: np.ndarray, p: tuple[float, float], q: tuple[float, float], r: float) -> None:
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(float)
    vx, vy = q[0] - p[0], q[1] - p[1]
    t = np.clip(((xx - p[0]) * vx + (yy - p[1]) * vy) / (vx * vx + vy * vy), 0, 1)
    img |= (xx - p[0] - t * vx) ** 2 + (yy - p[1] - t * vy) ** 2 <= r * r


def _hand(angles_deg, length=22.0, r=2.0, centre=(32.0, 42.0), palm=9.0, fuse=()) -> np.ndarray:
    """A disk palm with one capsule per angle (degrees from up); ``fuse`` bridges pairs of fingertips."""
    img = np.zeros((64, 64), dtype=bool)
    yy, xx = np.mgrid[0:64, 0:64]
    img |= (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= palm**2
    tips = []
    for a in angles_deg:
        tip = (centre[0] + length * math.sin(math.radians(a)), centre[1] - length * math.cos(math.radians(a)))
        _capsule(img, centre, tip, r)
        tips.append(tip)
    for i, j in fuse:
        _capsule(img, tips[i], tips[j], r)
    return img


def _as_images(*masks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(masks)).float()[:, None]


# ------------------------------------------------------------------ generator


def test_make_hands_shapes_dtypes_and_binary_values():
    d = make_hands(50, 0)
    assert isinstance(d, HandsDataset) and len(d) == 50
    assert d.images.shape == (50, 1, 64, 64) and d.images.dtype == torch.float32
    assert d.n_fingers.shape == (50,) and d.n_fingers.dtype == torch.long
    assert torch.equal(d.n_fingers, torch.full((50,), 5))
    assert set(d.images.unique().tolist()) == {0.0, 1.0}  # binary, so within [0, 1]
    area = d.images.sum((1, 2, 3))
    assert bool((area > 300).all()) and bool((area < 0.5 * 64 * 64).all())  # a hand, not a speck or a flood
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.images = d.images  # type: ignore[misc]


def test_make_hands_deterministic_per_seed_and_prefix_stable():
    a, b = make_hands(20, 7, n_fingers={3, 5, 7}), make_hands(20, 7, n_fingers={3, 5, 7})
    assert torch.equal(a.images, b.images) and torch.equal(a.n_fingers, b.n_fingers)
    c = make_hands(20, 8, n_fingers={3, 5, 7})
    assert (a.images != c.images).flatten(1).any(1).all()  # every image differs under another seed
    head = make_hands(6, 7, n_fingers={3, 5, 7})  # image k depends on (seed, k) only, not on n
    assert torch.equal(head.images, a.images[:6]) and torch.equal(head.n_fingers, a.n_fingers[:6])


def test_make_hands_varies_within_a_seed():
    d = make_hands(300, 1)
    x = d.images[:, 0].numpy()
    assert len({img.tobytes() for img in x}) == 300
    area = x.sum((1, 2))
    assert area.std() > 40  # size varies
    tilt, left_minus_right, top_minus_bottom = [], [], []
    for img in x:
        depth = ndimage.distance_transform_edt(img)
        py, px = np.unravel_index(depth.argmax(), img.shape)  # the palm's centre
        ys, xs = np.nonzero(img)
        tilt.append(math.degrees(math.atan2(xs.mean() - px, py - ys.mean())))  # palm -> centroid, from "up"
        left_minus_right.append(xs.min() - (63 - xs.max()))
        top_minus_bottom.append(ys.min() - (63 - ys.max()))
    assert np.std(tilt) > 10  # +-20 degree rotations (about 6.5 without them)
    assert abs(np.mean(tilt)) < 3  # ... around upright
    assert np.std(left_minus_right) > 3 and np.std(top_minus_bottom) > 3  # placed anywhere it fits, not centred


def _geometry(n: int, counts: np.ndarray, seed: int, size: int = 64) -> dict:
    u = np.random.default_rng(seed).random((n, hands_mod._N_GLOBAL + 3 * MAX_FINGERS))
    return hands_mod._hand_geometry(u, counts, size)


def test_neighbouring_fingers_are_apart_near_their_tips():
    """The separation guarantee on the drawn geometry: over the last 4 local units of the shorter of two
    neighbouring fingers, their capsules (axes from the palm centre) are >= 2 px apart."""
    n = 2000
    counts = np.tile([2, 5, 7, 8], n // 4)
    g = _geometry(n, counts, 6)

    def point_to_segment(p, a, b):  # (m, 2) each -> (m,)
        ab = b - a
        t = np.clip(((p - a) * ab).sum(1) / (ab * ab).sum(1), 0, 1)
        return np.linalg.norm(p - a - t[:, None] * ab, axis=1)

    closest = np.inf
    for f in range(MAX_FINGERS - 1):
        pair = counts > f + 1
        start = np.minimum(g["tip"][pair, f], g["tip"][pair, f + 1]) - 4.0
        ends = []
        for k in (f, f + 1):
            direction = np.stack([np.sin(g["phi"][pair, k]), -np.cos(g["phi"][pair, k])], 1)
            ends.append((start[:, None] * direction, g["tip"][pair, k][:, None] * direction))
        (a0, a1), (b0, b1) = ends  # two segments that do not cross: the closest pair involves an end point
        d = np.min([point_to_segment(a0, b0, b1), point_to_segment(a1, b0, b1),
                    point_to_segment(b0, a0, a1), point_to_segment(b1, a0, a1)], axis=0)
        gap_px = (d - g["radius"][pair, f] - g["radius"][pair, f + 1]) * g["s_px"][pair]
        closest = min(closest, gap_px.min())
    assert closest >= 2.0 - 1e-9


def test_fingers_in_the_image_are_apart_near_their_tips():
    """The same guarantee on the pixels: each finger drawn alone lies in the image, and the lit pixels of
    neighbouring fingers near the shorter one's tip are >= 2 px apart (centre to centre)."""
    n, counts = 60, np.tile([5, 7, 8], 20)
    g = _geometry(n, counts, 5)
    images = hands_mod._rasterise(g, 64).astype(bool)
    yy, xx = np.mgrid[0:64, 0:64].astype(float)
    closest = np.inf
    for i in range(n):
        c, s, scale = math.cos(g["theta"][i]), math.sin(g["theta"][i]), g["s_px"][i]
        centre = (g["cx"][i], g["cy"][i])
        dist_from_centre = np.hypot(xx - centre[0], yy - centre[1]) / scale  # local units
        fingers = []
        for f in range(counts[i]):
            lx, ly = g["tip"][i, f] * math.sin(g["phi"][i, f]), -g["tip"][i, f] * math.cos(g["phi"][i, f])
            tip = (centre[0] + scale * (c * lx - s * ly), centre[1] + scale * (s * lx + c * ly))
            mask = np.zeros((64, 64), dtype=bool)
            _capsule(mask, centre, tip, scale * g["radius"][i, f])
            assert not (mask & ~images[i]).any()  # the finger is in the image
            fingers.append(mask)
        for f in range(counts[i] - 1):
            zone = dist_from_centre >= min(g["tip"][i, f], g["tip"][i, f + 1]) - 4.0
            a, b = fingers[f] & zone, fingers[f + 1] & zone
            assert a.sum() >= 8 and b.sum() >= 8
            closest = min(closest, ndimage.distance_transform_edt(~b)[a].min())
    assert closest >= 2.0


@pytest.mark.parametrize("size", [48, 64, 96])
def test_hands_stay_inside_the_frame(size):
    d = make_hands(250, 3, n_fingers={1, 4, 7, MAX_FINGERS}, size=size)  # the widest fans included
    assert d.images.shape == (250, 1, size, size)
    x = d.images[:, 0]
    border = x[:, 0, :].sum() + x[:, -1, :].sum() + x[:, :, 0].sum() + x[:, :, -1].sum()
    assert border.item() == 0
    assert x.amax((0, 1)).sum() > 0.6 * size and x.amax((0, 2)).sum() > 0.6 * size  # they use the frame


def test_finger_count_labels_are_honoured():
    assert torch.equal(make_hands(10, 0, n_fingers=3).n_fingers, torch.full((10,), 3))
    drawn = make_hands(400, 0, n_fingers={4, 6, 7}).n_fingers
    assert set(drawn.tolist()) == {4, 6, 7}
    freq = torch.bincount(drawn, minlength=8)[[4, 6, 7]].float() / 400
    assert bool(((freq - 1 / 3).abs() < 0.08).all())  # uniform over the set
    per_image = [1, 2, 3, 4, 5, 6, 7, 8]
    d = make_hands(8, 0, n_fingers=per_image)
    assert d.n_fingers.tolist() == per_image
    assert torch.equal(make_hands(8, 0, n_fingers=torch.tensor(per_image)).n_fingers, d.n_fingers)
    assert count_fingers(d.images).tolist() == per_image  # the images carry the counts they are labelled with


# ------------------------------------------------------------------ counter


@pytest.mark.parametrize("k", [3, 4, 5, 6, 7])
def test_counter_is_exact_on_synthetic_hands(k):
    d = make_hands(300, 100 + k, n_fingers=k)
    counts = count_fingers(d.images)
    assert counts.dtype == torch.long and counts.shape == (300,)
    assert torch.equal(counts, d.n_fingers), finger_histogram(counts)


def test_counter_is_exact_at_the_extremes_and_other_sizes():
    for size, n in ((48, 60), (128, 24)):
        d = make_hands(n, 9, n_fingers={1, 2, 8}, size=size)
        assert torch.equal(count_fingers(d.images), d.n_fingers), size


def test_counter_on_hand_built_images():
    five = [-60, -30, 0, 30, 60]
    imgs = _as_images(
        _hand(five),
        _hand([-20, 20]),
        _hand(five, fuse=[(1, 2)]),  # two fingertips fused: still two fingers
        _hand(five, fuse=[(0, 1), (3, 4)]),
        _hand(five, length=10.0),  # stubs of 1 px beyond the palm's rim are not fingers
        _hand([]),  # a fist: palm only
        _hand([-30, 0, 30], r=2.6),  # thicker fingers
    )
    assert count_fingers(imgs).tolist() == [5, 2, 5, 5, 0, 0, 3]


def test_counter_accepts_n_h_w_and_numpy_and_keeps_device():
    d = make_hands(5, 2, n_fingers=[3, 4, 5, 6, 7])
    assert count_fingers(d.images[:, 0]).tolist() == [3, 4, 5, 6, 7]
    assert count_fingers(d.images.numpy()).tolist() == [3, 4, 5, 6, 7]
    assert count_fingers(d.images.bool()).tolist() == [3, 4, 5, 6, 7]
    assert count_fingers(d.images).device == d.images.device


def test_counter_is_robust_to_light_noise_and_blur():
    d = make_hands(150, 11, n_fingers={3, 5, 7})
    g = torch.Generator().manual_seed(0)
    noisy = d.images + 0.2 * torch.randn(d.images.shape, generator=g)  # ~0.6% of pixels flip at 0.5
    assert torch.equal(count_fingers(noisy), d.n_fingers)
    blurred = torch.from_numpy(ndimage.gaussian_filter(d.images.numpy(), (0, 0, 1.0, 1.0)))  # soft edges
    assert torch.equal(count_fingers(blurred), d.n_fingers)


def test_counter_ignores_specks_and_blobs_off_the_hand():
    d = make_hands(40, 12, n_fingers={4, 6})
    specks, blobs = d.images.clone(), d.images.clone()
    for img, blob in zip(specks[:, 0], blobs[:, 0]):
        gap = ndimage.distance_transform_edt(img.numpy() == 0)  # distance to the hand
        y, x = divmod(int(np.argmax(gap)), 64)
        img[y, max(x - 1, 0) : max(x - 1, 0) + 2] = 1.0  # a 2-px speck, as far from the hand as possible
        # a 4x4 blob (it survives the 3x3 majority vote) inside the hand's bounding box, >= 2 px off the hand
        ys, xs = np.nonzero(img.numpy())
        box = np.zeros((64, 64), dtype=bool)
        box[ys.min() + 2 : ys.max() - 4, xs.min() + 2 : xs.max() - 4] = True
        y, x = divmod(int(np.argmax(np.where(box, gap, 0))), 64)
        assert gap[y, x] >= 5
        blob[y - 1 : y + 3, x - 1 : x + 3] = 1.0
    assert torch.equal(count_fingers(specks), d.n_fingers)
    assert torch.equal(count_fingers(blobs), d.n_fingers)


def _push_down(images: torch.Tensor, rows: int) -> torch.Tensor:
    """Shift each hand down until ``rows`` rows of its palm are cut off by the lower edge."""
    cut = torch.zeros_like(images)
    for i, img in enumerate(images[:, 0]):
        shift = 63 - int(torch.nonzero(img.sum(1))[-1]) + rows
        cut[i, 0, shift:] = img[: 64 - shift]
    return cut


def test_counter_with_the_hand_cut_by_the_border():
    d = make_hands(100, 14, n_fingers={3, 5, 7})
    cut = _push_down(d.images, 3)
    assert bool((cut[:, 0, -1].sum(1) > 5).all())
    assert torch.equal(count_fingers(cut), d.n_fingers)
    # a deeper cut leaves a thin half-palm; measured 94% on 300 such hands (the frame counts as background)
    assert (count_fingers(_push_down(d.images, 6)) == d.n_fingers).float().mean() >= 0.9


def test_counter_on_empty_and_degenerate_images():
    x = torch.zeros(3, 1, 64, 64)
    x[1, 0, 10, 10:40] = 1.0  # a 1-px line: no palm
    x[2, 0, 20:23, 20:23] = 1.0  # a 3x3 speck
    assert count_fingers(x).tolist() == [0, 0, 0]
    assert count_fingers(torch.ones(1, 1, 64, 64)).tolist() == [0]  # all foreground: a palm, no fingers
    assert count_fingers(torch.zeros(0, 1, 64, 64)).shape == (0,)


def test_threshold_is_used():
    d = make_hands(4, 13, n_fingers=5)
    dim = 0.4 * d.images  # a faint hand
    assert count_fingers(dim).tolist() == [0, 0, 0, 0]
    assert count_fingers(dim, threshold=0.2).tolist() == [5, 5, 5, 5]


def test_finger_histogram_and_miscount_rate():
    counts = torch.tensor([5, 5, 4, 6, 5, 7, 5, 0])
    assert finger_histogram(counts) == {0: 1, 4: 1, 5: 4, 6: 1, 7: 1}
    assert list(finger_histogram([6, 4, 6])) == [4, 6]
    assert miscount_rate(counts) == pytest.approx(4 / 8)
    assert miscount_rate(counts, expected=4) == pytest.approx(7 / 8)
    assert miscount_rate([5, 5, 5]) == 0.0


# ------------------------------------------------------------------ 11k Hands loader


def _standin_jpegs(folder, names, seed=0, portrait=False):
    """Write make_hands images as 1600x1200-like JPEGs: 2x upscaled, padded on the long side, RGB."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    src = make_hands(len(names), seed, n_fingers=list(range(3, 3 + len(names)))).images[:, 0].numpy()
    for name, img in zip(names, src):
        big = np.kron(img, np.ones((2, 2))) * 200 + 30  # 128 x 128, values 30..230
        pad = ((22, 22), (0, 0)) if portrait else ((0, 0), (22, 22))
        big = np.pad(big, pad, constant_values=30).astype(np.uint8)
        Image.fromarray(np.stack([big] * 3, -1)).save(folder / name, quality=95)
    return (src * 200 + 30) / 255.0


def test_load_11k_hands_round_trips_standin_jpegs(tmp_path):
    names = ["Hand_0000010.jpg", "Hand_0000002.jpg", "Hand_0000003.jpg", "Hand_0011744.jpg"]
    expected = _standin_jpegs(tmp_path / "Hands", names)
    (tmp_path / "Hands" / "notes.txt").write_text("not an image")
    order = np.argsort(names)  # sorted file order: 0000002, 0000003, 0000010, 0011744
    x = load_11k_hands(tmp_path)
    assert x.shape == (4, 1, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    err = (x[:, 0].numpy()[:, None] - expected[order][None]).__abs__().mean((2, 3))  # (loaded, source)
    assert np.all(np.diag(err) < 0.04) and np.all(err.argmin(1) == np.arange(4))  # right images, right order
    assert torch.equal(load_11k_hands(tmp_path, n=2), x[:2])
    small = load_11k_hands(tmp_path, size=32)
    assert small.shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match="only 4"):
        load_11k_hands(tmp_path, n=5)


def test_load_11k_hands_reads_root_itself_and_centre_crops_portraits(tmp_path):
    expected = _standin_jpegs(tmp_path, ["Hand_0000005.jpg"], seed=3, portrait=True)
    x = load_11k_hands(tmp_path)
    assert x.shape == (1, 1, 64, 64)
    assert np.abs(x[0, 0].numpy() - expected[0]).mean() < 0.04


def test_load_11k_hands_missing_files_say_how_to_get_them(tmp_path):
    (tmp_path / "Hands").mkdir()
    (tmp_path / "Hands" / "other.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        load_11k_hands(tmp_path)
    assert "11khands" in str(info.value)
    with pytest.raises(FileNotFoundError, match="no 11k Hands images"):
        load_11k_hands(tmp_path / "does-not-exist")


def test_load_11k_hands_download_unpacks_the_zip(tmp_path, monkeypatch):
    """The download path, with the network replaced by a local zip laid out like the official one."""
    staging = tmp_path / "staging"
    expected = _standin_jpegs(staging / "Hands", ["Hand_0000002.jpg", "Hand_0000003.jpg"])
    archive = tmp_path / "official.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((staging / "Hands").iterdir()):
            zf.write(p, f"Hands/{p.name}")
        zf.write(staging / "Hands" / "Hand_0000002.jpg", "../evil/Hand_0000099.jpg")  # must not escape root
    seen = []

    def fake_fetch(url, dest):
        seen.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(hands_mod, "_fetch", fake_fetch)
    root = tmp_path / "data"
    x = load_11k_hands(root, download=True, n=2)
    assert seen == [HANDS_11K_URL]
    assert x.shape == (2, 1, 64, 64) and np.abs(x[:, 0].numpy() - expected).mean() < 0.04
    assert not (tmp_path / "evil").exists() and not (root / "Hands.zip.part").exists()
    assert sorted(p.name for p in (root / "Hands").iterdir()) == ["Hand_0000002.jpg", "Hand_0000003.jpg", "Hand_0000099.jpg"]
    load_11k_hands(root, download=True)  # files present: no second download
    assert len(seen) == 1

    monkeypatch.setattr(hands_mod, "_fetch", lambda url, dest: dest.write_bytes(b"<html>quota exceeded</html>"))
    with pytest.raises(RuntimeError, match="not a zip"):
        load_11k_hands(tmp_path / "other", download=True)


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0, seed=0), "n must be a positive int"),
        (dict(n=-3, seed=0), "n must be a positive int"),
        (dict(n=2.5, seed=0), "n must be a positive int"),
        (dict(n=True, seed=0), "n must be a positive int"),
        (dict(n=4, seed=0.5), "seed must be an int"),
        (dict(n=4, seed=0, n_fingers=0), r"in 1\.\.8"),
        (dict(n=4, seed=0, n_fingers=MAX_FINGERS + 1), r"in 1\.\.8"),
        (dict(n=4, seed=0, n_fingers=set()), "empty set"),
        (dict(n=4, seed=0, n_fingers={0, 5}), r"in 1\.\.8"),
        (dict(n=4, seed=0, n_fingers=[5, 5, 5]), "length n=4"),  # a sequence gives one count per image
        (dict(n=4, seed=0, n_fingers=[[5, 5], [5, 5]]), "length n=4"),
        (dict(n=2, seed=0, n_fingers=[5.5, 5]), "integers"),
        (dict(n=2, seed=0, n_fingers="55"), "one int per image|length"),
        (dict(n=4, seed=0, size=32), "size must be >= 48"),
        (dict(n=4, seed=0, size=0), "size must be a positive int"),
    ],
)
def test_make_hands_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_hands(**kwargs)


SHAPE = r"images must have shape \(N, 1, H, W\)"
COUNTS = "counts must be a non-empty 1-D sequence"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: count_fingers(torch.zeros(2, 3, 64, 64)), SHAPE),
        (lambda: count_fingers(torch.zeros(64, 64)), SHAPE),
        (lambda: count_fingers(torch.zeros(2, 1, 1, 64, 64)), SHAPE),
        (lambda: count_fingers(torch.zeros(2, 1, 4, 4)), SHAPE),
        (lambda: count_fingers(torch.zeros(2, 1, 64, 64), threshold=float("nan")), "threshold must be finite"),
        (lambda: finger_histogram(torch.tensor([])), COUNTS),
        (lambda: finger_histogram(torch.tensor([[5, 5]])), COUNTS),
        (lambda: finger_histogram([5.0, 4.5]), "counts must be integers"),
        (lambda: miscount_rate([5, 5], expected=0), "expected must be a positive int"),
        (lambda: miscount_rate([]), COUNTS),
        (lambda: load_11k_hands("unused", n=0), "n must be a positive int"),
        (lambda: load_11k_hands("unused", size=0), "size must be a positive int"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()

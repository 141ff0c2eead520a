"""The counter-based normal generator (mi_lib.diffusion.noise): bits, per-sample determinism, distribution and tails."""

import math

import pytest
import torch

from mi_lib import noise
from mi_lib.diffusion.noise import MAX_ABS_NORMAL, _box_muller, _stream, normal, random_bits

MASK = (1 << 64) - 1


def _splitmix64_reference(seed: int, step: int, counter: int) -> int:
    """SplitMix64 by the textbook, in Python's unbounded ints: mix64(key + counter * gamma) mod 2**64."""
    key, gamma = _stream(seed, step)
    z = (key + counter * gamma) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


@pytest.mark.parametrize("shape, seed, step, offset", [((7, 3), 5, 2, 11), ((1000,), 0, 0, 0), ((40, 2, 3), -1, 999, 123_456_789), ((2, 1), 2**70 + 3, 5, 0)])
def test_bits_are_splitmix64_with_wrapping_int64(shape, seed, step, offset):
    """torch's int64 multiply wraps and its >> is arithmetic: the masked shifts must give the unsigned result
    (1000 elements reach the vectorised kernels as well as the scalar tail)."""
    bits = random_bits(shape, seed=seed, step=step, sample_offset=offset).flatten().tolist()
    per_sample = math.prod(shape[1:])
    expected = [_splitmix64_reference(seed, step, offset * per_sample + i) for i in range(len(bits))]
    assert [b & MASK for b in bits] == expected
    if len(bits) >= 1000:
        assert any(b < 0 for b in bits) and any(b > 0 for b in bits)  # both halves of the unsigned range occur


def test_stream_key_and_gamma_by_hand():
    key, gamma = _stream(0, 0)
    assert gamma % 2 == 1 and bin(gamma ^ (gamma >> 1)).count("1") >= 24
    assert len({_stream(s, t) for s in range(20) for t in range(50)}) == 1000


def test_any_split_into_batches_gives_the_same_numbers():
    full = normal((10, 2, 3), seed=4, step=7)
    parts = torch.cat([normal((4, 2, 3), seed=4, step=7), normal((1, 2, 3), seed=4, step=7, sample_offset=4), normal((5, 2, 3), seed=4, step=7, sample_offset=5)])
    assert torch.equal(full, parts)
    assert torch.equal(normal((10, 2, 3), seed=4, step=7), full)  # deterministic
    assert torch.equal(normal((10, 6), seed=4, step=7), full.reshape(10, 6))  # element e of sample k
    for other in (normal((10, 2, 3), seed=5, step=7), normal((10, 2, 3), seed=4, step=8)):
        assert (other != full).float().mean() > 0.99


def test_dtype_and_float64_values():
    z64 = normal((1000,), seed=1, step=1, dtype=torch.float64)
    z32 = normal((1000,), seed=1, step=1)
    assert z64.dtype == torch.float64 and z32.dtype == torch.float32
    assert torch.equal(z64.float(), z32)


def test_largest_value_is_the_stated_bound():
    """All 40 radius bits zero (u1 = 2**-40) and the first angle gives the largest |z|; all ones give ~0."""
    smallest_u1 = torch.tensor([0, (1 << 24) - 1, 1 << 23], dtype=torch.int64)  # angle 0.5, 2**24-0.5, 2**23+0.5 grid steps
    z = _box_muller(smallest_u1)
    assert MAX_ABS_NORMAL == pytest.approx(7.4466, abs=1e-4)
    torch.testing.assert_close(z.abs(), torch.full((3,), MAX_ABS_NORMAL, dtype=torch.float64), rtol=1e-12, atol=0)
    assert z[0] > 0 and z[2] < 0
    largest_u1 = torch.tensor([-1 - ((1 << 24) - 1)], dtype=torch.int64)  # radius bits all ones: u1 = 1
    assert _box_muller(largest_u1).item() == 0.0


@pytest.mark.parametrize("z, rel", [(5.0, 2e-6), (6.0, 3e-4), (7.0, 0.1)])  # measured: 4e-7, 1e-4, 5%
def test_construction_tail_is_exact(z, rel):
    """Sum the construction's tail exactly, no sampling: P(|Z| > z) = sum over the radius grid beyond z of the
    share of the angle grid with |cos| > z / r. It matches erfc(z / sqrt 2) to the grid's resolution."""
    n_radius, n_angle = 2**noise._RADIUS_BITS, 2**noise._ANGLE_BITS
    beyond = math.floor(n_radius * math.exp(-z * z / 2))  # m + 1 <= beyond  <=>  r(m) >= z
    u1 = torch.arange(1, beyond + 1, dtype=torch.float64) / n_radius
    r = (-2 * u1.log()).sqrt()
    phi = torch.arccos((z / r).clamp(max=1.0))  # |cos theta| > z/r on 4 arcs of half-width phi
    step = 2 * math.pi / n_angle
    in_arc = torch.ceil(phi / step - 0.5).clamp(min=0)  # angle midpoints (a + 0.5) * step below phi
    tail = (4 * in_arc / n_angle).sum().item() / n_radius
    exact = math.erfc(z / math.sqrt(2))
    assert abs(tail / exact - 1) < rel, (tail, exact)


def test_ten_million_draws_have_normal_moments_cdf_and_tails():
    n = 10_000_000
    z = normal((n,), seed=2024, step=0, dtype=torch.float64)
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)  # kurtosis: Var(z^4) = 105 - 9
    # Kolmogorov-Smirnov on a 1M subsample (sorting 10M takes too long on one core); 1.95/sqrt(n) is the 0.1% level
    sub = z[:1_000_000].sort().values
    cdf = torch.special.ndtr(sub)
    k = torch.arange(1, sub.numel() + 1, dtype=torch.float64) / sub.numel()
    d = torch.maximum(k - cdf, cdf - (k - 1 / sub.numel())).max().item()
    assert d < 1.95 / math.sqrt(sub.numel()), d
    for cut in (3.0, 4.0):
        p = math.erfc(cut / math.sqrt(2))
        count = (z.abs() > cut).sum().item()
        assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)), (cut, count, n * p)
    assert z.abs().max().item() <= MAX_ABS_NORMAL


@pytest.mark.parametrize("pair", ["samples", "steps", "elements", "seeds"])
def test_neighbouring_draws_are_uncorrelated(pair):
    n = 1_000_000
    if pair == "samples":  # sample k and sample k + 1, same step
        z = normal((n + 1,), seed=0, step=5)
        a, b = z[:-1], z[1:]
    elif pair == "steps":  # the same sample at steps t and t - 1
        a, b = normal((n,), seed=0, step=5), normal((n,), seed=0, step=4)
    elif pair == "elements":  # the two coordinates of a 2D sample
        z = normal((n, 2), seed=0, step=5)
        a, b = z[:, 0], z[:, 1]
    else:
        a, b = normal((n,), seed=0, step=5), normal((n,), seed=1, step=5)
    a, b = a.double(), b.double()
    for f in (lambda x: x, lambda x: x.square() - 1, lambda x: x.abs()):  # values, and magnitudes
        fa, fb = f(a), f(b)
        corr = ((fa - fa.mean()) * (fb - fb.mean())).mean() / (fa.std() * fb.std())
        assert abs(corr.item()) < 5 / math.sqrt(n), (pair, corr.item())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(seed=0, step=-1), ValueError, ">= 0"),
        (dict(seed=0, step=0, sample_offset=-2), ValueError, ">= 0"),
        (dict(seed=0.5, step=0), TypeError, "seed must be an int"),
        (dict(seed=0, step=True), TypeError, "step must be an int"),
        (dict(seed=0, step=0, sample_offset=2**61), ValueError, "counter overflow"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        normal((4, 2), **kwargs)


def test_normal_is_box_muller_of_the_reference_bits_by_the_textbook():
    """What the tail test above sums over, tied to the code: z = sqrt(-2 ln u1) cos(theta) with u1 = (top 40
    bits + 1) / 2**40 and theta = (low 24 bits + 0.5) 2 pi / 2**24, from the textbook SplitMix64 bits, in
    Python's math (a dropped half-step offset or a swapped bit field changes every value)."""
    seed, step, offset, n = 7, 3, 1_000, 257
    z = noise.normal((n,), seed=seed, step=step, sample_offset=offset, dtype=torch.float64).tolist()
    for i, value in enumerate(z):
        h = _splitmix64_reference(seed, step, offset + i)
        u1 = ((h >> 24) + 1) / 2**40
        theta = ((h & (2**24 - 1)) + 0.5) * 2 * math.pi / 2**24
        assert value == pytest.approx(math.sqrt(-2 * math.log(u1)) * math.cos(theta), rel=1e-15, abs=1e-15)

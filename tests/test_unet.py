import re

import pytest
import torch

import mi_lib
from mi_lib.diffusion.nets import shared_timestep
from mi_lib.diffusion.models import IMAGE_SCALES
from mi_lib.diffusion.unet import UNetConfig, UNetDenoiser

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Convolutions on these tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine two
    OpenMP threads spin-wait each other: this file took 110 s with conftest's 2 threads and 5 s with 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = UNetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, time_dim=32)
TINY_ATTN = UNetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=2, time_dim=32, attention=True)


def _perturbed(config: UNetConfig, seed: int = 0) -> UNetDenoiser:
    """A model whose zero-initialised output conv has been given random weights, so outputs depend on x and t."""
    torch.manual_seed(seed)
    net = UNetDenoiser(config).eval()
    with torch.no_grad():
        net.out[-1].weight.normal_(0.0, 0.1)
        net.out[-1].bias.normal_(0.0, 0.1)
    return net


@pytest.mark.parametrize("config", [TINY, TINY_ATTN], ids=["tiny", "tiny-attention"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_shape_and_zero_output_at_init(config, batch):
    torch.manual_seed(0)
    net = UNetDenoiser(config)
    assert net.sample_shape == (1, 16, 16) and net.config is config
    x = torch.randn(batch, *net.sample_shape)
    with torch.no_grad():
        eps = net(x, torch.randint(0, 50, (batch,)))
    assert eps.shape == x.shape
    assert torch.count_nonzero(eps) == 0


@pytest.mark.parametrize("config", [TINY, TINY_ATTN], ids=["tiny", "tiny-attention"])
def test_shared_timestep_matches_materialised(config):
    net = _perturbed(config)
    x = torch.randn(6, *net.sample_shape)
    t_shared = shared_timestep(17, 6, "cpu")
    assert t_shared.stride(0) == 0
    with torch.no_grad():
        out_shared, out_full = net(x, t_shared), net(x, torch.full((6,), 17, dtype=torch.long))
    assert out_full.abs().mean() > 1e-3  # not trivially equal because both are zero
    torch.testing.assert_close(out_shared, out_full)


def test_output_depends_on_t_per_sample():
    net = _perturbed(TINY)
    x = torch.randn(1, *net.sample_shape).expand(4, -1, -1, -1)  # the same image four times
    with torch.no_grad():
        out = net(x, torch.tensor([0, 10, 25, 49]))
    for i in range(4):
        for j in range(i + 1, 4):
            assert (out[i] - out[j]).abs().max() > 1e-4, (i, j)
    # and a shared t reproduces the matching row of a mixed-t batch
    with torch.no_grad():
        torch.testing.assert_close(net(x, shared_timestep(25, 4, "cpu"))[2], out[2])


def test_every_parameter_gets_a_gradient():
    net = _perturbed(TINY_ATTN).train()
    net(torch.randn(2, *net.sample_shape), torch.tensor([3, 40])).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert missing == []


@pytest.mark.parametrize(
    "shape",
    [(2, 1, 32, 32), (2, 16, 16), (2, 3, 16, 16), (2, 1, 16, 8), (1, 2, 1, 16, 16)],
)
def test_bad_x_shape(shape):
    net = UNetDenoiser(TINY)
    with pytest.raises(ValueError, match=re.escape("(B, 1, 16, 16)")):
        net(torch.zeros(shape), torch.zeros(shape[0], dtype=torch.long))


@pytest.mark.parametrize("t_shape", [(3,), (2, 1), ()])
def test_bad_t_shape(t_shape):
    with pytest.raises(ValueError, match=re.escape("t must have shape (2,)")):
        UNetDenoiser(TINY)(torch.zeros(2, 1, 16, 16), torch.zeros(t_shape, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 30}, r"image_size=30 must be divisible by patch\*2\*\*\(levels-1\)=4"),
        ({"image_size": 64, "channel_mults": (1, 2, 2, 2, 2, 2, 2, 2)}, r"divisible by patch\*2\*\*\(levels-1\)=128"),
        ({"base_channels": 0}, "base_channels must be a positive int"),
        ({"in_channels": -1}, "in_channels must be a positive int"),
        ({"blocks_per_level": 1.0}, "blocks_per_level must be a positive int"),
        ({"time_dim": True}, "time_dim must be a positive int"),
        ({"channel_mults": ()}, "channel_mults must be a non-empty tuple"),
        ({"channel_mults": (1, 0)}, "channel_mults must be a non-empty tuple"),
        ({"base_channels": 12}, r"divisible by groups=8; got widths \[12, 24, 24\]"),
        ({"groups": 0}, "groups must be a positive int"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"attention": 1}, "attention must be a bool"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)


def test_config_is_frozen_hashable_data():
    config = UNetConfig(image_size=16, base_channels=8, channel_mults=[1, 2], time_dim=32)
    assert config.channel_mults == (1, 2) and hash(config) == hash(UNetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), time_dim=32))
    with pytest.raises(AttributeError):
        config.base_channels = 16
    with pytest.raises(TypeError, match="UNetConfig"):
        UNetDenoiser({"base_channels": 8})


def test_the_image_models_parameter_counts_match_docstring():
    configs = {"ci": IMAGE_SCALES["ci"]["model"], "paper": UNetConfig()}
    counts = {name: sum(p.numel() for p in UNetDenoiser(c).parameters()) for name, c in configs.items()}
    assert counts == {"ci": 311_124, "paper": 1_534_849}
    for n in counts.values():
        assert f"{n:,}" in UNetDenoiser.__doc__
    assert all(c.sample_shape == (1, 64, 64) for c in configs.values())


def _squares(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) images in [-1, 1]: a 6x6 bright square at a random position on a dark background."""
    g = torch.Generator().manual_seed(seed)
    x0 = -torch.ones(n, 1, size, size)
    for i, (r, c) in enumerate(torch.randint(0, size - 6, (n, 2), generator=g).tolist()):
        x0[i, 0, r : r + 6, c : c + 6] = 1.0
    return x0


def test_trains_and_samples_with_the_shared_trainer_and_sampler():
    schedule = mi_lib.NoiseSchedule(mi_lib.ScheduleConfig("linear", 50, 1e-3, 0.2))
    torch.manual_seed(0)
    net = UNetDenoiser(TINY)
    result = mi_lib.train(net, _squares(32), schedule, mi_lib.TrainConfig(steps=30, batch_size=16), progress=False)
    losses = result.losses
    assert losses.shape == (30,) and torch.isfinite(losses).all()
    first, last = losses[:5].mean().item(), losses[-5:].mean().item()
    assert last < 0.75 * first, (first, last)

    out = mi_lib.sample(result.model, schedule, 4, progress=False, hal_window=(0, 3))
    assert out.x0.shape == (4, 1, 16, 16) and torch.isfinite(out.x0).all()
    assert out.hal is not None and out.hal.shape == (4,) and torch.isfinite(out.hal).all()
    assert (out.hal > 0).all()  # x0_hat moves over the last steps of a stochastic sampler


def test_sampling_is_chunk_independent_and_bf16_close():
    """Per-sample noise through a conv net: any chunking gives the same images bitwise; bf16 autocast in the
    network stays close to float32 over a short reverse process."""
    net = _perturbed(TINY)
    schedule = mi_lib.NoiseSchedule(mi_lib.ScheduleConfig("linear", 8, 1e-3, 0.2))
    ref = mi_lib.sample(net, schedule, 10, seed=3, progress=False, hal_window=(0, 3))
    for chunk in (1, 4):
        out = mi_lib.sample(net, schedule, 10, seed=3, chunk_size=chunk, progress=False, hal_window=(0, 3))
        assert torch.equal(out.x0, ref.x0) and torch.equal(out.hal, ref.hal), chunk
    bf = mi_lib.sample(net, schedule, 10, seed=3, progress=False, precision="bf16")
    assert bf.x0.dtype == torch.float32 and not torch.equal(bf.x0, ref.x0)
    torch.testing.assert_close(bf.x0, ref.x0, rtol=0.05, atol=0.05)


TINY_PATCH = UNetConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, time_dim=32, patch=2)


def test_patch_runs_at_lower_resolution_and_predicts_every_pixel():
    net = _perturbed(TINY_PATCH)
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0, 5, 9])
    out = net(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert net.conv_in.in_channels == 4 and net.out[-1].out_channels == 4
    # the network sees 8x8: its first activation has half the resolution
    seen = []
    handle = net.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    net(x, t)
    handle.remove()
    assert seen[0][-2:] == (8, 8)
    # each output pixel is its own prediction: different pixels of one 2x2 patch differ
    assert not torch.allclose(out[:, :, 0::2, 0::2], out[:, :, 1::2, 1::2])
    assert torch.equal(UNetDenoiser(TINY_PATCH)(x, t), torch.zeros_like(x))  # zero-initialised output conv


def test_patch_must_divide_the_image():
    with pytest.raises(ValueError, match=r"divisible by patch\*2\*\*\(levels-1\)=8 for patch=4"):
        UNetConfig(image_size=20, base_channels=8, channel_mults=(1, 2), patch=4)
    with pytest.raises(ValueError, match="patch must be a positive int"):
        UNetConfig(patch=0)

import pytest
import torch

from mi_lib import MLPConfig, MLPDenoiser, shared_timestep, sinusoidal_embedding


def test_official_size_and_tied_blocks():
    tied = MLPDenoiser(MLPConfig(data_dim=1))
    untied = MLPDenoiser(MLPConfig(data_dim=1, tied_blocks=False))
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(tied) == 66_817  # "~67k params" in REFERENCE.md
    per_block = 2 * 128 + 128 * 128 + (128 * 128 + 128) + 2 * 128 + 128 * 128
    assert n(untied) - n(tied) == 2 * per_block
    assert len(tied.blocks) == 1 and len(untied.blocks) == 3


def test_shapes_and_shared_timestep_fast_path():
    torch.manual_seed(0)
    net = MLPDenoiser(MLPConfig(data_dim=2, tied_blocks=False)).eval()
    x = torch.randn(16, 2)
    t_shared = shared_timestep(37, 16, "cpu")
    assert t_shared.stride(0) == 0
    t_full = torch.full((16,), 37, dtype=torch.long)
    with torch.no_grad():
        out_shared, out_full = net(x, t_shared), net(x, t_full)
    assert out_shared.shape == (16, 2)
    assert torch.allclose(out_shared, out_full, atol=1e-6)
    # different timesteps give different outputs
    with torch.no_grad():
        assert not torch.allclose(net(x, torch.arange(16)), out_full)


def test_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert sinusoidal_embedding(torch.tensor([3]), 7).shape == (1, 7)


@pytest.mark.parametrize(
    "x, t, match",
    [
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), r"\(B, 2\)"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), r"\(B, 2\)"),
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), r"\(4,\)"),
    ],
)
def test_bad_shapes(x, t, match):
    with pytest.raises(ValueError, match=match):
        MLPDenoiser(MLPConfig(data_dim=2))(x, t)


def test_bad_config():
    with pytest.raises(ValueError, match="width"):
        MLPConfig(width=0)
    with pytest.raises(TypeError):
        MLPDenoiser({"data_dim": 1})

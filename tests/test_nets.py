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


def test_embedding_frequencies_are_improved_diffusions_not_the_official_codes():
    """The documented spacing 10000^(-i / half) (nets.py says why it differs from the official code's
    10000^(-i / (half - 1))): t = 1 gives sin(f_i) in the first half, cos(f_i) in the second."""
    half = 64
    e = sinusoidal_embedding(torch.tensor([1]), 2 * half)[0].double()
    f = 10_000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    assert torch.allclose(e[:half], torch.sin(f), atol=1e-6) and torch.allclose(e[half:], torch.cos(f), atol=1e-6)
    official = 10_000.0 ** (-torch.arange(half, dtype=torch.float64) / (half - 1))
    assert not torch.allclose(e[:half], torch.sin(official), atol=1e-4)


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
    with pytest.raises(TypeError, match="must be an MLPConfig"):
        MLPDenoiser({"data_dim": 1})


def test_cpu_inference_linear_is_onednn_rows_independent_of_the_batch(monkeypatch):
    """Without autograd the MLP's linear layers run through oneDNN on the CPU (mi_lib.diffusion.nets.Linear): each row comes
    out the same in a batch of any size from 3 rows up (the sampler's chunk-size invariance rests on it), within
    float32 rounding of nn.Linear; with autograd or under autocast they are nn.Linear itself."""
    from mi_lib.diffusion import nets

    if nets._ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no oneDNN linear")
    torch.manual_seed(0)
    layer = nets.Linear(128, 128)
    x = torch.randn(1000, 128)
    plain = torch.nn.functional.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        whole = layer(x)
        for lo, n in ((0, 3), (5, 16), (100, 17), (0, 640), (360, 640)):
            assert torch.equal(layer(x[lo:lo + n]), whole[lo:lo + n]), (lo, n)
    torch.testing.assert_close(whole, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(layer(x).detach(), plain.detach())  # autograd on: nn.Linear's own path
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # autocast: nn.Linear's path, which autocast rounds
    calls = []  # which path each call took: oneDNN only without autograd and autocast
    monkeypatch.setattr(nets, "_ONEDNN_LINEAR", lambda *a: calls.append(1) or nets.torch.ops.mkldnn._linear_pointwise(*a))
    layer(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert calls == []
    with torch.inference_mode():
        layer(x)
    assert calls == [1]

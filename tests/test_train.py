import pytest
import torch

from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, ScheduleConfig, TrainConfig, diffusion_loss, mixture_1d, train

SMALL = MLPConfig(data_dim=1, width=32, time_dim=32)


def _data():
    m = mixture_1d((-1.0, 1.0), 0.05)
    return m.sample(4096, torch.Generator().manual_seed(0))[0]


def test_training_lowers_the_loss_on_two_modes():
    torch.manual_seed(0)
    result = train(MLPDenoiser(SMALL), _data(), NoiseSchedule("official"), TrainConfig(steps=400, batch_size=512, seed=0), progress=False)
    first, last = result.losses[:20].mean().item(), result.losses[-50:].mean().item()
    assert result.losses.shape == (400,)
    assert last < 0.5 * first
    assert not result.model.training


def test_training_is_deterministic_and_ema_lags():
    s = NoiseSchedule("official")
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # same init
        runs.append(train(MLPDenoiser(SMALL), _data(), s, TrainConfig(steps=30, batch_size=256, seed=7, ema_decay=0.9), progress=False))
    assert torch.equal(runs[0].losses, runs[1].losses)
    ema, model = runs[0].ema_model, runs[0].model
    diffs = [(pe - p).abs().max().item() for pe, p in zip(ema.parameters(), model.parameters())]
    assert max(diffs) > 0  # EMA is not the live model
    assert all(torch.isfinite(p).all() for p in ema.parameters())


def test_ema_update_rule():
    """After one step the EMA is decay * init + (1 - decay) * model."""
    torch.manual_seed(0)
    net = MLPDenoiser(SMALL)
    init = [p.detach().clone() for p in net.parameters()]
    r = train(net, _data(), NoiseSchedule("official"), TrainConfig(steps=1, batch_size=256, ema_decay=0.9), progress=False)
    for p0, p, pe in zip(init, r.model.parameters(), r.ema_model.parameters()):
        assert torch.allclose(pe, 0.9 * p0 + 0.1 * p, atol=1e-6)


def test_loss_is_per_sample():
    s = NoiseSchedule("official")
    net = MLPDenoiser(SMALL)
    x0 = torch.randn(8, 1)
    loss = diffusion_loss(net, s, x0, torch.arange(8), torch.randn(8, 1))
    assert loss.shape == (8,)


@pytest.mark.parametrize(
    "data, error",
    [(torch.zeros(10), ValueError), (torch.zeros(10, 1, dtype=torch.long), TypeError), ([[0.0]], ValueError)],
)
def test_bad_data(data, error):
    with pytest.raises(error):
        train(MLPDenoiser(SMALL), data, NoiseSchedule(ScheduleConfig("linear", 10, 1e-3, 0.2)), TrainConfig(steps=1), progress=False)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(batch_size=-1), dict(lr=0.0), dict(ema_decay=1.0)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)

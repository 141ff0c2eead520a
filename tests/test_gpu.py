"""GPU checks: skipped without CUDA. Across devices we compare statistics, not bits."""

import pytest
import torch

from conftest import requires_cuda
from mi_lib import MLPConfig, MLPDenoiser, NoiseSchedule, TrainConfig, mixture_1d, require_cuda, sample, train


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_require_cuda_is_one_clear_error():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        require_cuda("the fast sampler")


@requires_cuda
def test_schedule_copy_per_device():
    s = NoiseSchedule("official")
    assert s.to("cuda") is s.to("cuda:0")
    assert s.to("cuda").alpha_bar.device.type == "cuda"


@requires_cuda
def test_gpu_training_and_sampling_match_cpu_statistics():
    data, _ = mixture_1d((-1.0, 1.0), 0.05).sample(8192, torch.Generator().manual_seed(0))
    s = NoiseSchedule("official")
    cfg = MLPConfig(data_dim=1, width=64, time_dim=64)
    out = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = train(MLPDenoiser(cfg), data.to(device), s, TrainConfig(steps=1000, batch_size=1024, seed=0), progress=False).model
        out[device] = sample(model, s, 4000, seed=1, hal_window=(0, 9), progress=False)
    for device in out:
        x = out[device].x0[:, 0]
        # measured on CPU with these settings: median distance 0.05, 99% of samples within 0.2 of a mode
        assert (x.abs() - 1).abs().median() < 0.1
        assert ((x.abs() - 1).abs() < 0.2).float().mean() > 0.9
    cpu, gpu = out["cpu"].x0[:, 0], out["cuda"].x0[:, 0]
    assert abs((cpu > 0).float().mean() - (gpu > 0).float().mean()) < 0.1
    assert out["cuda"].hal.device.type == "cpu" and torch.isfinite(out["cuda"].hal).all()

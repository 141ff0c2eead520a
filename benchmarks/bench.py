"""Throughput of mi_lib's trainer and sampler on whatever device runs this script.

Prints training steps/s at batch 10,000 (the official MLP, 1D data) and sampling throughput
(samples x steps per second, and seconds per million samples for T = 1000) for the official schedule,
with and without the streaming Hal statistic. A benchmark, not a test: nothing is asserted.

    python benchmarks/bench.py                 # auto device (GPU if present), default sizes
    python benchmarks/bench.py --device cpu --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import mi_lib as mi


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training(device: torch.device, steps: int, tied: bool) -> float:
    data, _ = mi.mixture_1d().sample(100_000, torch.Generator(device=device).manual_seed(0), stratified=True)
    schedule = mi.NoiseSchedule("official")
    config = mi.TrainConfig(steps=steps, batch_size=10_000)
    mi.train(mi.MLPDenoiser(mi.MLPConfig(data_dim=1, tied_blocks=tied)), data, schedule, mi.TrainConfig(steps=5), progress=False)  # warm-up
    result = mi.train(mi.MLPDenoiser(mi.MLPConfig(data_dim=1, tied_blocks=tied)), data, schedule, config, progress=False)
    return steps / result.wall_time_s


def bench_sampling(device: torch.device, n: int, data_dim: int, hal: bool) -> float:
    model = mi.MLPDenoiser(mi.MLPConfig(data_dim=data_dim)).to(device)
    schedule = mi.NoiseSchedule("official")
    kwargs = dict(hal_window=(0, 9)) if hal else {}
    mi.sample(model, schedule, min(n, 1000), progress=False, **kwargs)  # warm-up
    _sync(device)
    start = time.perf_counter()
    mi.sample(model, schedule, n, progress=False, **kwargs)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: GPU if present)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (default: 30 CPU, 1000 GPU)")
    parser.add_argument("--samples", type=int, default=None, help="samples per sampling run (default: 10,000 CPU, 1,000,000 GPU)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else mi.default_device()
    if device.type == "cuda":
        mi.require_cuda("--device cuda")
    gpu = device.type == "cuda"
    steps = args.train_steps or (1000 if gpu else 30)
    n = args.samples or (1_000_000 if gpu else 10_000)
    T = 1000

    rows: dict[str, float] = {}
    rows["train_steps_per_s_tied"] = bench_training(device, steps, tied=True)
    rows["train_steps_per_s_untied"] = bench_training(device, steps, tied=False)
    for dim in (1, 2):
        seconds = bench_sampling(device, n, dim, hal=False)
        rows[f"sample_{dim}d_sample_steps_per_s"] = n * T / seconds
        rows[f"sample_{dim}d_s_per_million"] = seconds * 1e6 / n
    seconds = bench_sampling(device, n, 2, hal=True)
    rows["sample_2d_hal_s_per_million"] = seconds * 1e6 / n

    info = {
        "device": mi.describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "train_steps_timed": steps,
        "samples_per_run": n,
        "T": T,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"device: {info['device']}  torch {info['torch']}  ({n:,} samples x {T} steps, {steps} training steps)")
    labels = {
        "train_steps_per_s_tied": "training, official MLP (tied blocks), batch 10k   [steps/s]",
        "train_steps_per_s_untied": "training, independent blocks, batch 10k            [steps/s]",
        "sample_1d_sample_steps_per_s": "sampling 1D, ancestral, T=1000          [sample-steps/s]",
        "sample_1d_s_per_million": "sampling 1D, 1M samples x 1000 steps            [seconds]",
        "sample_2d_sample_steps_per_s": "sampling 2D, ancestral, T=1000          [sample-steps/s]",
        "sample_2d_s_per_million": "sampling 2D, 1M samples x 1000 steps            [seconds]",
        "sample_2d_hal_s_per_million": "sampling 2D + streaming Hal (last 10 steps), 1M [seconds]",
    }
    for key, label in labels.items():
        print(f"{label}  {rows[key]:>14,.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "figures": rows}, f, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("MI_PROGRESS", "0")
    main()

"""Throughput of mi_lib's trainer and sampler against issue 7's targets, on whatever device runs this script.

One line per target, beside the official code's figure from shared/REFERENCE.md (one H100) and the ratio
(> 1: faster than the official code), for each fast path (``precision``, ``compile``, fused Adam):

  (a) seconds for 100 M 1D samples at T = 1000, extrapolated from a timed run of ``--samples`` samples;
  (b) training steps/s of the official MLP at batch 10,000;
  (c) Hal (streaming, last 10 steps) over 102,500 2D samples x 1000 steps, in seconds (extrapolated from
      ``--hal-samples`` where that is fewer);
  (d) the 64x64 UNet (``--unet-preset``): training images/s and sampling images/s at T = 1000 (extrapolated
      from ``--unet-steps`` steps);
  (e) peak GPU memory of every run, on CUDA.

A short table comes last. A benchmark, not a test: nothing is asserted. Every timed run is preceded by a
warm-up with the same shapes, so compile time is not counted. On a CPU the compiled variants are skipped
unless ``--compile on`` (compiling takes minutes there).

    python benchmarks/bench.py                          # auto device (GPU if present), default sizes
    OMP_NUM_THREADS=1 python benchmarks/bench.py --device cpu --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

import mi_lib as mi

T = 1000
#: The official code on one H100 (shared/REFERENCE.md, "Speed of the official code").
OFFICIAL_1D_S_PER_MILLION = 25.7
OFFICIAL_2D_S_PER_MILLION = 26.0
OFFICIAL_TRAIN_STEPS_PER_S = 235.0
OFFICIAL_HAL_102500_S = 5.9  # 102,500 x 1000-step 2D trajectories saved to the CPU
HAL_N = 102_500
PAPER_N = 100_000_000


@dataclass
class Row:
    key: str
    label: str
    value: float
    unit: str
    official: float | None
    peak_gib: float | None

    @property
    def ratio(self) -> float | None:
        """How many times faster than the official code (> 1 is faster)."""
        if self.official is None:
            return None
        return self.official / self.value if self.unit == "s" else self.value / self.official


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def _fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else (f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn) -> tuple[float, float | None]:
    """(seconds, peak GPU memory in GiB or None) of one call of ``fn``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def _name(options: dict) -> str:
    parts = [options.get("precision", "float32")]
    if options.get("compile"):
        parts.append("compile" if options["compile"] is True else f"compile={options['compile']}")
    if options.get("fused"):
        parts.append("fused Adam")
    return " + ".join(parts)


def sampling_options(compile_on: bool, mode: bool | str) -> list[dict]:
    options = [{}, {"precision": "tf32"}, {"precision": "bf16"}]
    if compile_on:
        options += [{"compile": mode}, {"compile": mode, "precision": "bf16"}]
    return options


def bench_sampling(device: torch.device, data_dim: int, n: int, chunk: int, options: dict, hal: bool) -> tuple[float, float | None]:
    """Seconds (and peak GiB) for n ancestral samples x T steps, after a 2-step DDIM warm-up of the same shapes."""
    torch.manual_seed(0)
    model = mi.MLPDenoiser(mi.MLPConfig(data_dim=data_dim)).to(device)
    schedule = mi.NoiseSchedule("official")
    kw = dict(chunk_size=chunk, progress=False, hal_window=(0, 9) if hal else None, **options)
    mi.sample(model, schedule, n, sampler="ddim", steps=2, **kw)  # warm-up: compiles for these shapes
    return _timed(device, lambda: mi.sample(model, schedule, n, **kw))


def _train_rate(device: torch.device, model: torch.nn.Module, data: torch.Tensor, batch: int, steps: int, options: dict) -> tuple[float, float | None]:
    """Optimizer steps/s (and peak GiB) of ``steps`` timed steps, after a 3-step warm-up of the same model
    (so a compiled model is compiled, and its guards hold, before the clock starts)."""
    schedule = mi.NoiseSchedule("official")
    mi.train(model, data, schedule, mi.TrainConfig(steps=3, batch_size=batch), progress=False, **options)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = mi.train(model, data, schedule, mi.TrainConfig(steps=steps, batch_size=batch), progress=False, **options)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return steps / result.wall_time_s, peak


def bench_training(device: torch.device, steps: int, options: dict) -> tuple[float, float | None]:
    """Steps/s of the official MLP at batch 10,000 on 1D data."""
    data, _ = mi.mixture_1d().sample(100_000, torch.Generator().manual_seed(0), stratified=True)
    torch.manual_seed(0)
    return _train_rate(device, mi.MLPDenoiser(mi.MLPConfig(data_dim=1)), data.float().to(device), 10_000, steps, options)


def bench_unet_training(device: torch.device, preset: str, batch: int, steps: int, options: dict) -> tuple[float, float | None]:
    """Images/s of UNet training at ``batch`` (random images: the cost does not depend on them)."""
    config = mi.UNET_PRESETS[preset]
    data = torch.rand((4 * batch, *config.sample_shape), generator=torch.Generator().manual_seed(0)).mul_(2).sub_(1).to(device)
    torch.manual_seed(0)
    rate, peak = _train_rate(device, mi.UNetDenoiser(config), data, batch, steps, options)
    return rate * batch, peak


def bench_unet_sampling(device: torch.device, preset: str, n: int, steps: int, options: dict) -> tuple[float, float | None]:
    """Images/s at T = 1000 from a timed run of ``steps`` network evaluations per image (DDIM with ``steps``
    steps costs the network what ``steps`` ancestral steps do)."""
    torch.manual_seed(0)
    model = mi.UNetDenoiser(mi.UNET_PRESETS[preset]).to(device)
    schedule = mi.NoiseSchedule("official")
    kw = dict(sampler="ddim", progress=False, chunk_size=n, **options)
    mi.sample(model, schedule, n, steps=2, **kw)  # warm-up
    seconds, peak = _timed(device, lambda: mi.sample(model, schedule, n, steps=steps, **kw))
    return n / (seconds * T / steps), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: GPU if present)")
    parser.add_argument("--samples", type=int, default=None, help="1D/2D samples per timed sampling run (default: 2,000 CPU, 2,000,000 GPU)")
    parser.add_argument("--chunk-size", type=int, default=None, help="sampling chunk (default: all --samples at once, at most 4,000,000)")
    parser.add_argument("--hal-samples", type=int, default=None, help=f"2D samples for the Hal run (default: --samples on CPU, {HAL_N:,} GPU)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps at batch 10k (default: 20 CPU, 500 GPU)")
    parser.add_argument("--unet-preset", default=None, choices=sorted(mi.UNET_PRESETS), help="UNet size (default: ci on CPU, paper on GPU)")
    parser.add_argument("--unet-batch", type=int, default=None, help="UNet training batch (default: 8 CPU, 128 GPU)")
    parser.add_argument("--unet-steps", type=int, default=None, help="timed UNet training steps and sampling steps (default: 3 CPU, 30 GPU)")
    parser.add_argument("--unet-samples", type=int, default=None, help="images per UNet sampling run (default: 16 CPU, 512 GPU; sample() runs whole blocks of 16)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="include torch.compile variants (auto: on GPU only)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for the compiled variants (e.g. max-autotune)")
    parser.add_argument("--json", default=None, help="also write the figures, device, torch and date to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else mi.default_device()
    if device.type == "cuda":
        mi.require_cuda("--device cuda")
    gpu = device.type == "cuda"
    n = args.samples or (2_000_000 if gpu else 2_000)
    chunk = args.chunk_size or min(n, 4_000_000)
    n_hal = args.hal_samples or (HAL_N if gpu else n)
    train_steps = args.train_steps or (500 if gpu else 20)
    preset = args.unet_preset or ("paper" if gpu else "ci")
    unet_batch, unet_steps = args.unet_batch or (128 if gpu else 8), args.unet_steps or (30 if gpu else 3)
    unet_n = args.unet_samples or (512 if gpu else 16)
    compile_on = args.compile == "on" or (args.compile == "auto" and gpu)
    mode: bool | str = True if args.compile_mode == "default" else args.compile_mode

    info = {
        "device": mi.describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "T": T,
        "samples_per_run": n,
        "chunk_size": chunk,
        "hal_samples": n_hal,
        "train_steps_timed": train_steps,
        "unet_preset": preset,
        "unet_batch": unet_batch,
        "unet_steps": unet_steps,
        "unet_samples": unet_n,
        "compiled_variants": compile_on,
    }
    print(f"device: {info['device']}  torch {info['torch']}  {info['date']}")
    print(f"(a) {n:,} samples per sampling run (chunk {chunk:,}); (b) {train_steps} training steps; (c) {n_hal:,} Hal samples; "
          f"(d) UNet '{preset}', batch {unet_batch}, {unet_steps} steps, {unet_n} images", flush=True)
    rows: list[Row] = []

    def add(key: str, label: str, value: float, unit: str, official: float | None, peak: float | None) -> None:
        row = Row(key, label, value, unit, official, peak)
        rows.append(row)
        off = "—" if official is None else f"{_fmt(official)} {unit}"
        ratio = _fmt_ratio(row.ratio)
        mem = "" if peak is None else f"  peak {peak:.2f} GiB"
        print(f"{label:<62} {_fmt(value):>12} {unit:<9} official {off:<14} ratio {ratio}{mem}", flush=True)

    extrapolated = n != PAPER_N
    for options in sampling_options(compile_on, mode):
        seconds, peak = bench_sampling(device, 1, n, chunk, options, hal=False)
        label = f"(a) 100M 1D samples x 1000 steps, {_name(options)}" + (f" [from {n:,}]" if extrapolated else "")
        add(f"sample_1d_100m_s[{_name(options)}]", label, seconds * PAPER_N / n, "s", OFFICIAL_1D_S_PER_MILLION * PAPER_N / 1e6, peak)

    train_options = [{}, {"fused": True, "precision": "tf32"}, {"fused": True, "precision": "bf16"}]
    if compile_on:
        train_options += [{"fused": True, "precision": "bf16", "compile": mode}]
    for options in train_options:
        rate, peak = bench_training(device, train_steps, options)
        add(f"train_steps_per_s[{_name(options)}]", f"(b) training, MLP, batch 10k, {_name(options)}", rate, "steps/s", OFFICIAL_TRAIN_STEPS_PER_S, peak)

    hal_options = [{}, {"precision": "bf16"}] + ([{"compile": mode, "precision": "bf16"}] if compile_on else [])
    for options in hal_options:
        seconds, peak = bench_sampling(device, 2, n_hal, min(n_hal, chunk), options, hal=True)
        label = f"(c) Hal, {HAL_N:,} 2D x 1000 steps, {_name(options)}" + (f" [from {n_hal:,}]" if n_hal != HAL_N else "")
        add(f"hal_102500_s[{_name(options)}]", label, seconds * HAL_N / n_hal, "s", OFFICIAL_HAL_102500_S, peak)
    seconds, peak = bench_sampling(device, 2, n, chunk, {}, hal=False)
    add("sample_2d_100m_s[float32]", f"    100M 2D samples, no Hal, float32" + (f" [from {n:,}]" if extrapolated else ""), seconds * PAPER_N / n, "s", OFFICIAL_2D_S_PER_MILLION * PAPER_N / 1e6, peak)

    unet_options = [{}, {"precision": "bf16", "fused": True}] + ([{"precision": "bf16", "fused": True, "compile": mode}] if compile_on else [])
    for options in unet_options:
        rate, peak = bench_unet_training(device, preset, unet_batch, unet_steps, options)
        add(f"unet_train_images_per_s[{_name(options)}]", f"(d) UNet {preset} training, batch {unet_batch}, {_name(options)}", rate, "images/s", None, peak)
    for options in unet_options:
        options = {k: v for k, v in options.items() if k != "fused"}
        rate, peak = bench_unet_sampling(device, preset, unet_n, unet_steps, options)
        add(f"unet_sample_images_per_s[{_name(options)}]", f"(d) UNet {preset} sampling T=1000, {_name(options)} [from {unet_steps} st.]", rate, "images/s", None, peak)

    print("\nsummary (ratio = how many times faster than the official code on one H100; > 1 is faster)")
    print(f"| {'target':<62} | {'ours':>20} | {'official (H100)':>18} | {'ratio':>7} | {'peak GiB':>8} |")
    for row in rows:
        off = "—" if row.official is None else f"{_fmt(row.official)} {row.unit}"
        ratio = _fmt_ratio(row.ratio)
        mem = "—" if row.peak_gib is None else f"{row.peak_gib:.2f}"
        print(f"| {row.label[:62]:<62} | {f'{_fmt(row.value)} {row.unit}':>20} | {off:>18} | {ratio:>7} | {mem:>8} |")

    if args.json:
        by_key = {row.key: row.value for row in rows}
        figures = {
            # the keys scripts/results_table.py reads (float32, eager, as before)
            "train_steps_per_s_tied": by_key["train_steps_per_s[float32]"],
            "sample_1d_s_per_million": by_key["sample_1d_100m_s[float32]"] * 1e6 / PAPER_N,
            "sample_2d_s_per_million": by_key["sample_2d_100m_s[float32]"] * 1e6 / PAPER_N,
            "sample_2d_hal_s_per_million": by_key["hal_102500_s[float32]"] * 1e6 / HAL_N,
            **by_key,
        }
        with open(args.json, "w") as f:
            json.dump({"info": info, "figures": figures, "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    os.environ.setdefault("MI_PROGRESS", "0")
    main()

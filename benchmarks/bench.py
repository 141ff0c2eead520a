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

  (f) the tail-equivalence check: 1 M samples (``--tail-samples``) of the shipped 1D model of chapter 2 drawn
      on the same noise under every sampling fast path; each gap's count must lie within 3 Poisson SDs of
      float32's. The fastest sampling path that passes is printed as the ``MI_FAST_SAMPLE`` to use, and the
      CUDA-graph training step as the ``MI_FAST_TRAIN`` if it trains the reference's model (``--env-out``
      writes both as shell exports, which ``scripts/paper_scale.sh --window`` sources).

``--short`` is the GPU window's version (about two minutes on an H200): fewer variants and steps.
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
from mi_lib.diffusion.fused import DEFAULT_CONFIG, FUSED_CONFIGS, fused_available

T = 1000
#: The official code on one H100 (shared/REFERENCE.md, "Speed of the official code"): the figures printed beside
#: ours unless ``--official`` measures them on this machine in this run.
OFFICIAL_H100 = {
    "sample_1d_s_per_million": 25.7,
    "sample_2d_s_per_million": 26.0,
    "train_steps_per_s": 235.0,
    "hal_102500_s": 5.9,  # 102,500 x 1000-step 2D trajectories saved to the CPU
}
HAL_N = 102_500
PAPER_N = 100_000_000
#: The UNets timed: the image models' of each scale (mi_lib.diffusion.models.IMAGE_SCALES; paper: the default config).
UNETS = {"ci": mi.IMAGE_SCALES["ci"]["model"], "paper": mi.UNetConfig()}


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
    """A training variant's label (``fused`` is Adam's fused kernel)."""
    parts = [options.get("precision", "float32")]
    if options.get("compile"):
        parts.append("compile" if options["compile"] is True else f"compile={options['compile']}")
    if options.get("fused"):
        parts.append("fused Adam")
    if options.get("graph"):
        parts.append("CUDA graph")
    return " + ".join(parts)


def _sample_name(options: dict) -> str:
    """A sampling variant's label (``fused`` is the one-kernel sampler of mi_lib.diffusion.fused)."""
    parts = [options.get("precision", "float32")]
    if options.get("compile"):
        parts.append("compile" if options["compile"] is True else f"compile={options['compile']}")
    if options.get("fused"):
        parts.append("fused kernel" + (f" {options['fused']}" if isinstance(options["fused"], str) else ""))
    return " + ".join(parts)


def official_figures(script: str, device: torch.device, samples: int, train_steps: int, hal_samples: int) -> dict[str, float]:
    """The official code's figures measured here, now, by ``script`` (shared/peer/time_official.py, which runs
    the official code unchanged): the same keys as :data:`OFFICIAL_H100`."""
    import subprocess
    import sys

    cmd = [sys.executable, script, "--device", device.type, "--samples", str(samples), "--train-steps", str(train_steps),
           "--hal-samples", str(hal_samples)]
    print("official code:", " ".join(cmd), flush=True)
    got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return {
        "sample_1d_s_per_million": got["sample_1d_s"] * 1e6 / samples,
        "sample_2d_s_per_million": got["sample_2d_s"] * 1e6 / samples,
        "train_steps_per_s": got["train_1d_steps_per_s"],
        "hal_102500_s": got["save_all_2d_s"] * HAL_N / hal_samples,
    }


def env_text(options: dict) -> str:
    """``options`` as an MI_FAST_* value (mi_lib.settings.parse_fast_options reads it back)."""
    return ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(options.items()))


#: Chapter 2's CI-scale model of modes 1, 2, 3 (shipped in data/checkpoints): the tail check's model.
TAIL_SPEC = dict(dataset="1d", means=(1.0, 2.0, 3.0), sigma=0.05, n_train=20_000, data_seed=0)


def tail_check(device: torch.device, n: int, chunk: int, variants: list[dict]):
    """The same n samples (same seed, so the same noise) of chapter 2's shipped 1D model under each sampling
    variant, yielded as each ends: (options, seconds, peak GiB, samples in each gap at k = 4, within 3 Poisson
    SDs of float32's counts in every gap, the error that stopped it or None). The first variant must be
    float32 eager (the reference); a fast path that fails is reported and skipped, not fatal."""
    from mi_lib.measure.metrics import gap_mass
    from mi_lib.diffusion.models import MixtureModelSpec, mixture_model

    spec = MixtureModelSpec(**TAIL_SPEC, train=mi.TrainConfig(steps=5_000, batch_size=2_000))
    model = mixture_model(spec, mi.Settings(device=device, progress=False)).model  # shipped: nothing trains
    schedule = mi.NoiseSchedule(spec.schedule)
    ref = None
    for options in variants:
        kw = dict(chunk_size=chunk, progress=False, seed=11, **options)
        result = {}
        try:
            _warm_up(model, schedule, min(n, chunk), kw)
            seconds, peak = _timed(device, lambda: result.setdefault("x", mi.sample(model, schedule, n, **kw).x0))
        except Exception as error:
            if ref is None:
                raise
            yield options, float("nan"), None, [], False, f"{type(error).__name__}: {str(error).strip()[:300]}"
            continue
        counts = [round(float(v) * n) for v in gap_mass(result["x"], spec.mixture(), 4.0)]
        ref = counts if ref is None else ref
        ok = all(abs(c - r) <= 3 * max(r, 1) ** 0.5 for c, r in zip(counts, ref))
        yield options, seconds, peak, counts, ok, None


def sampling_options(compile_on: bool, mode: bool | str) -> list[dict]:
    options = [{}, {"precision": "tf32"}, {"precision": "bf16"}]
    if compile_on:
        options += [{"compile": mode}, {"compile": mode, "precision": "bf16"}]
    return options


def _warm_up(model, schedule, n: int, kw: dict) -> None:
    """Compile what ``kw`` compiles, for these shapes, before the clock starts: a 2-step DDIM run (the fused
    kernel, DDPM only, runs 1,024 samples through all steps)."""
    if kw.get("fused"):
        mi.sample(model, schedule, 1024, **{**kw, "chunk_size": 1024})
    else:
        mi.sample(model, schedule, n, sampler="ddim", steps=2, **kw)


def bench_sampling(device: torch.device, data_dim: int, n: int, chunk: int, options: dict, hal: bool) -> tuple[float, float | None]:
    """Seconds (and peak GiB) for n ancestral samples x T steps, after a warm-up of the same shapes."""
    torch.manual_seed(0)
    model = mi.MLPDenoiser(mi.MLPConfig(data_dim=data_dim)).to(device)
    schedule = mi.NoiseSchedule("official")
    kw = dict(chunk_size=chunk, progress=False, hal_window=(0, 9) if hal else None, **options)
    _warm_up(model, schedule, n, kw)
    return _timed(device, lambda: mi.sample(model, schedule, n, **kw))


def _train_rate(device: torch.device, make_model, data: torch.Tensor, batch: int, steps: int, options: dict) -> tuple[float, float | None, torch.Tensor]:
    """Optimizer steps/s (and peak GiB, and the losses) of ``steps`` timed steps of a fresh ``make_model()``,
    after a 3-step warm-up of another (so a compiled model is compiled, and its guards hold, before the clock
    starts; a captured step captures again: its capture is counted)."""
    schedule = mi.NoiseSchedule("official")
    mi.train(make_model(), data, schedule, mi.TrainConfig(steps=3, batch_size=batch), progress=False, **options)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = mi.train(make_model(), data, schedule, mi.TrainConfig(steps=steps, batch_size=batch), progress=False, **options)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return steps / result.wall_time_s, peak, result.losses


def _seeded(make, seed: int = 0):
    def build():
        torch.manual_seed(seed)
        return make()
    return build


def bench_training(device: torch.device, steps: int, options: dict) -> tuple[float, float | None, torch.Tensor]:
    """Steps/s of the official MLP at batch 10,000 on 1D data (and the losses: every variant starts from the
    same weights and draws)."""
    data, _ = mi.mixture_1d().sample(100_000, torch.Generator().manual_seed(0), stratified=True)
    return _train_rate(device, _seeded(lambda: mi.MLPDenoiser(mi.MLPConfig(data_dim=1))), data.float().to(device), 10_000, steps, options)


def bench_training_many(device: torch.device, steps: int, k: int, options: dict) -> tuple[float, float | None]:
    """Model-steps/s (and peak GiB) of k official MLPs trained as one stacked network (mi_lib.train_many) at batch
    10,000 each, on k draws of the 1D data (seeds 0..k-1), after a 3-step warm-up."""
    datas = [mi.mixture_1d().sample(100_000, torch.Generator().manual_seed(i), stratified=True)[0].float().to(device) for i in range(k)]
    schedule = mi.NoiseSchedule("official")
    models = lambda: [_seeded(lambda: mi.MLPDenoiser(mi.MLPConfig(data_dim=1)), i)() for i in range(k)]  # noqa: E731
    mi.train_many(models(), datas, schedule, mi.TrainConfig(steps=3, batch_size=10_000), progress=False, **options)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    results = mi.train_many(models(), datas, schedule, mi.TrainConfig(steps=steps, batch_size=10_000), progress=False, **options)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return k * steps / results[0].wall_time_s, peak


def rates_of(losses: dict, name: str, rows: list) -> float:
    """The steps/s recorded for training variant ``name`` (0 if it did not run)."""
    return next((row.value for row in rows if row.key == f"train_steps_per_s[{name}]"), 0.0)


def bench_unet_training(device: torch.device, preset: str, batch: int, steps: int, options: dict) -> tuple[float, float | None]:
    """Images/s of UNet training at ``batch`` (random images: the cost does not depend on them)."""
    config = UNETS[preset]
    data = torch.rand((4 * batch, *config.sample_shape), generator=torch.Generator().manual_seed(0)).mul_(2).sub_(1).to(device)
    rate, peak, _ = _train_rate(device, _seeded(lambda: mi.UNetDenoiser(config)), data, batch, steps, options)
    return rate * batch, peak


def bench_unet_sampling(device: torch.device, preset: str, n: int, steps: int, options: dict) -> tuple[float, float | None]:
    """Images/s at T = 1000 from a timed run of ``steps`` network evaluations per image (DDIM with ``steps``
    steps costs the network what ``steps`` ancestral steps do)."""
    torch.manual_seed(0)
    model = mi.UNetDenoiser(UNETS[preset]).to(device)
    schedule = mi.NoiseSchedule("official")
    kw = dict(sampler="ddim", progress=False, chunk_size=n, **options)
    mi.sample(model, schedule, n, steps=2, **kw)  # warm-up
    seconds, peak = _timed(device, lambda: mi.sample(model, schedule, n, steps=steps, **kw))
    return n / (seconds * T / steps), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: GPU if present)")
    parser.add_argument("--short", action="store_true", help="the GPU window's run: fewer variants and steps (~2 min on an H200)")
    parser.add_argument("--samples", type=int, default=None, help="1D/2D samples per timed sampling run (default: 2,000 CPU, 2,000,000 GPU)")
    parser.add_argument("--tail-samples", type=int, default=None, help="samples of the tail-equivalence check (default: 2,000 CPU, 1,000,000 GPU)")
    parser.add_argument("--chunk-size", type=int, default=None, help="sampling chunk (default: all --samples at once, at most 4,000,000)")
    parser.add_argument("--hal-samples", type=int, default=None, help=f"2D samples for the Hal run (default: --samples on CPU, {HAL_N:,} GPU)")
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps at batch 10k (default: 20 CPU, 500 GPU; x10 captured)")
    parser.add_argument("--unet-preset", default=None, choices=sorted(UNETS), help="UNet size: the CI- or paper-scale image models' (default: ci on CPU, paper on GPU)")
    parser.add_argument("--unet-batch", type=int, default=None, help="UNet training batch (default: 8 CPU, 128 GPU)")
    parser.add_argument("--unet-steps", type=int, default=None, help="timed UNet training steps and sampling steps (default: 3 CPU, 30 GPU)")
    parser.add_argument("--unet-samples", type=int, default=None, help="images per UNet sampling run (default: 16 CPU, 512 GPU; sample() runs whole blocks of 16)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"), help="include torch.compile variants (auto: on GPU only)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for the compiled variants (e.g. max-autotune)")
    parser.add_argument("--json", default=None, help="also write the figures, device, torch and date to this JSON file")
    parser.add_argument("--official", default=None, metavar="TIME_OFFICIAL_PY",
                        help="measure the official code here first with this script (shared/peer/time_official.py) and print its figures "
                             "beside ours (default: the H100 figures of shared/REFERENCE.md)")
    parser.add_argument("--env-out", default=None, help="write the chosen MI_FAST_SAMPLE / MI_FAST_TRAIN as shell exports to this file")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else mi.default_device()
    if device.type == "cuda":
        mi.require_cuda("--device cuda")
    gpu = device.type == "cuda"
    n = args.samples or (2_000_000 if gpu else 2_000)
    n_tail = args.tail_samples or (1_000_000 if gpu else 2_000)
    chunk = args.chunk_size or min(max(n, n_tail), 4_000_000)
    n_hal = args.hal_samples or (HAL_N if gpu else n)
    train_steps = args.train_steps or (500 if gpu else 20)
    preset = args.unet_preset or ("paper" if gpu else "ci")
    unet_batch, unet_steps = args.unet_batch or (128 if gpu else 8), args.unet_steps or ((10 if args.short else 30) if gpu else 3)
    unet_n = args.unet_samples or ((256 if args.short else 512) if gpu else 16)
    compile_on = args.compile == "on" or (args.compile == "auto" and gpu)
    mode: bool | str = True if args.compile_mode == "default" else args.compile_mode

    info = {
        "device": mi.describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "short": args.short,
        "T": T,
        "samples_per_run": n,
        "tail_samples": n_tail,
        "chunk_size": chunk,
        "hal_samples": n_hal,
        "train_steps_timed": train_steps,
        "unet_preset": preset,
        "unet_batch": unet_batch,
        "unet_steps": unet_steps,
        "unet_samples": unet_n,
        "compiled_variants": compile_on,
        "commit": mi.storage.results.git_commit(),
    }
    print(f"device: {info['device']}  torch {info['torch']}  {info['date']}{'  (--short)' if args.short else ''}")
    official, official_where = dict(OFFICIAL_H100), "H100, shared/REFERENCE.md"
    if args.official:
        n_official = 200_000 if args.short or not gpu else 1_000_000
        official = official_figures(args.official, device, n_official if gpu else 2_000, 500 if gpu else 20, HAL_N if gpu else 2_000)
        official_where = f"{info['device']}, measured in this run"
    info["official"] = {"where": official_where, **official}
    print(f"official figures: {official_where}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in official.items()), flush=True)
    print(f"(a) {n:,} samples per sampling run (chunk {chunk:,}); (b) {train_steps} training steps; (c) {n_hal:,} Hal samples; "
          f"(d) UNet '{preset}', batch {unet_batch}, {unet_steps} steps, {unet_n} images; (f) {n_tail:,} samples", flush=True)
    rows: list[Row] = []

    def add(key: str, label: str, value: float, unit: str, official: float | None, peak: float | None) -> None:
        row = Row(key, label, value, unit, official, peak)
        rows.append(row)
        off = "—" if official is None else f"{_fmt(official)} {unit}"
        ratio = _fmt_ratio(row.ratio)
        mem = "" if peak is None else f"  peak {peak:.2f} GiB"
        print(f"{label:<62} {_fmt(value):>12} {unit:<9} official {off:<14} ratio {ratio}{mem}", flush=True)

    # (f) first: it picks the sampling fast path the chapters use; its runs are also (a)'s figures on a trained model
    fused_why = fused_available(device) if gpu else "the fused kernel is timed on a GPU (on a CPU it runs in Triton's interpreter)"
    # (--short: the kernel's tf32 and bf16 variants, each compiled once; its float32 one is checked by tests/test_fused.py)
    fused_variants = [{"fused": True, "precision": p} for p in (("tf32", "bf16") if args.short else ("float32", "tf32", "bf16"))] if fused_why is None else []
    if fused_why is not None:
        print(f"(no fused-kernel variants: {fused_why})")
    fallback = [{"compile": mode, "precision": "bf16"}] if compile_on else [{"precision": "bf16"}]
    if args.short:  # the compiled network only as the fallback of a fused kernel that fails here (its compile takes ~1 min)
        tail_variants = [{}] + (fused_variants or fallback)
    else:
        tail_variants = [{}] + [o for o in sampling_options(compile_on, mode) if o] + fused_variants
    print(f"(f) tail-equivalence: {n_tail:,} samples of chapter 2's shipped 1D model (modes 1, 2, 3) on the same noise; samples in each gap (k = 4)", flush=True)
    tail_rows, passing = [], []

    def variants():
        yield from tail_variants
        fused_passed = [row["options"] for row in tail_rows if row["options"].get("fused") and row["passes"]]
        if fused_variants and not fused_passed:
            if args.short:
                print("    no fused variant passed: the compiled network instead", flush=True)
                yield from fallback
            return
        if fused_passed:  # the kernel's other launch configurations, at the precision of its fastest passing variant
            best = min((row for row in tail_rows if row["options"] in fused_passed), key=lambda row: row["seconds"])["options"]
            for rows, warps in FUSED_CONFIGS:
                if (rows, warps) != DEFAULT_CONFIG:
                    yield {**best, "fused": f"{rows}x{warps}"}

    for options, seconds, peak, counts, ok, error in tail_check(device, n_tail, min(n_tail, chunk), variants()):
        tail_rows.append({"options": options, "seconds": seconds, "gaps": counts, "passes": ok, "error": error})
        if error is not None:
            print(f"(a) {_sample_name(options)}: FAILED TO RUN ({error})", flush=True)
            continue
        add(f"sample_1d_100m_s[{_sample_name(options)}, trained]", f"(a) 100M 1D x 1000 steps, trained model, {_sample_name(options)} [from {n_tail:,}]",
            seconds * PAPER_N / n_tail, "s", official["sample_1d_s_per_million"] * PAPER_N / 1e6, peak)
        print(f"    gaps {counts}: {'within 3 Poisson SDs of float32' if ok else 'FAILS: outside 3 Poisson SDs of float32'}", flush=True)
        if ok:
            passing.append((seconds, options))
    chosen_sample = min(passing, key=lambda p: p[0])[1]
    print(f"    fastest that passes: {_sample_name(chosen_sample)} -> MI_FAST_SAMPLE={env_text(chosen_sample)!r}", flush=True)

    extrapolated = n != PAPER_N
    for options in ([] if args.short else sampling_options(compile_on, mode)):
        seconds, peak = bench_sampling(device, 1, n, chunk, options, hal=False)
        label = f"(a) 100M 1D samples x 1000 steps, {_sample_name(options)}" + (f" [from {n:,}]" if extrapolated else "")
        add(f"sample_1d_100m_s[{_sample_name(options)}]", label, seconds * PAPER_N / n, "s", official["sample_1d_s_per_million"] * PAPER_N / 1e6, peak)

    train_options = [{}] if args.short else [{}, {"fused": True, "precision": "tf32"}, {"fused": True, "precision": "bf16"}]
    if compile_on and not args.short:
        train_options += [{"fused": True, "precision": "bf16", "compile": mode}]
    if gpu:
        train_options += [{"graph": True, "fused": True}, {"graph": True, "fused": True, "precision": "bf16"}]
    train_losses = {}
    for options in train_options:
        steps = train_steps * (10 if options.get("graph") else 1)  # a captured step is ~10x quicker: time as long
        try:
            rate, peak, losses = bench_training(device, steps, options)
        except Exception as error:
            if not options:
                raise
            print(f"(b) training, {_name(options)}: FAILED TO RUN ({type(error).__name__}: {str(error).strip()[:300]})", flush=True)
            continue
        train_losses[_name(options)] = losses
        add(f"train_steps_per_s[{_name(options)}]", f"(b) training, MLP, batch 10k, {_name(options)}", rate, "steps/s", official["train_steps_per_s"], peak)
    chosen_train: dict = {}
    if gpu:  # the captured float32 step trains like the reference: same draws; fused Adam, its bias correction on the GPU
        ref, graph = train_losses[_name({})], train_losses.get(_name({"graph": True, "fused": True}), torch.full((train_steps,), float("nan")))
        graph = graph[:train_steps]
        head = float(((graph[:20] - ref[:20]).abs() / ref[:20].abs()).max())  # before training amplifies last-bit differences
        tail = float(graph[-100:].mean() / ref[-100:].mean() - 1)
        if head < 1e-4 and abs(tail) < 0.02:  # (False for nan: a captured step that did not run)
            chosen_train = {"graph": True, "fused": True}
        print(f"    CUDA graph + fused Adam, float32, against the eager reference: first 20 losses within {head:.1e} (bar 1e-4), mean of "
              f"the last 100 {tail:+.2%} (bar 2%): {'trains like it' if chosen_train else 'DOES NOT train like it'}", flush=True)
        if chosen_train:  # K models as one stacked network, captured: model-steps/s
            for k in (2, 5):
                try:
                    rate, peak = bench_training_many(device, train_steps * 10, k, {"graph": True, "fused": True})
                except Exception as error:
                    print(f"(b) training {k} models batched: FAILED TO RUN ({type(error).__name__}: {str(error).strip()[:300]})", flush=True)
                    continue
                add(f"train_model_steps_per_s[{k} batched, float32 + fused Adam + CUDA graph]",
                    f"(b) training, {k} MLPs batched, batch 10k each, graph (model-steps/s)", rate, "steps/s", official["train_steps_per_s"], peak)
                if rate > rates_of(train_losses, "float32 + fused Adam + CUDA graph", rows):
                    chosen_train = {"graph": True, "fused": True, "batch": True}
        print(f"    -> MI_FAST_TRAIN={env_text(chosen_train)!r}", flush=True)

    hal_options = [{}, chosen_sample] if args.short else [{}, {"precision": "bf16"}] + ([{"compile": mode, "precision": "bf16"}] if compile_on else [])
    for options in ([{}] if not chosen_sample else hal_options):
        seconds, peak = bench_sampling(device, 2, n_hal, min(n_hal, chunk), options, hal=True)
        label = f"(c) Hal, {HAL_N:,} 2D x 1000 steps, {_sample_name(options)}" + (f" [from {n_hal:,}]" if n_hal != HAL_N else "")
        add(f"hal_102500_s[{_sample_name(options)}]", label, seconds * HAL_N / n_hal, "s", official["hal_102500_s"], peak)
    if not args.short:
        seconds, peak = bench_sampling(device, 2, n, chunk, {}, hal=False)
        add("sample_2d_100m_s[float32]", "    100M 2D samples, no Hal, float32" + (f" [from {n:,}]" if extrapolated else ""), seconds * PAPER_N / n, "s", official["sample_2d_s_per_million"] * PAPER_N / 1e6, peak)

    unet_options = [{}, {"precision": "bf16", "fused": True}] + ([{"precision": "bf16", "fused": True, "compile": mode}] if compile_on and not args.short else [])
    for options in unet_options:
        rate, peak = bench_unet_training(device, preset, unet_batch, unet_steps, options)
        add(f"unet_train_images_per_s[{_name(options)}]", f"(d) UNet {preset} training, batch {unet_batch}, {_name(options)}", rate, "images/s", None, peak)
    for options in unet_options:
        options = {k: v for k, v in options.items() if k != "fused"}
        rate, peak = bench_unet_sampling(device, preset, unet_n, unet_steps, options)
        add(f"unet_sample_images_per_s[{_sample_name(options)}]", f"(d) UNet {preset} sampling T=1000, {_sample_name(options)} [from {unet_steps} st.]", rate, "images/s", None, peak)

    print(f"\nsummary (ratio = how many times faster than the official code ({official_where}); > 1 is faster)")
    print(f"| {'target':<62} | {'ours':>20} | {'official':>18} | {'ratio':>7} | {'peak GiB':>8} |")
    for row in rows:
        off = "—" if row.official is None else f"{_fmt(row.official)} {row.unit}"
        ratio = _fmt_ratio(row.ratio)
        mem = "—" if row.peak_gib is None else f"{row.peak_gib:.2f}"
        print(f"| {row.label[:62]:<62} | {f'{_fmt(row.value)} {row.unit}':>20} | {off:>18} | {ratio:>7} | {mem:>8} |")
    print(f"chosen: MI_FAST_SAMPLE={env_text(chosen_sample)!r} MI_FAST_TRAIN={env_text(chosen_train)!r}")

    if args.env_out:
        with open(args.env_out, "w") as f:
            f.write(f"export MI_FAST_SAMPLE='{env_text(chosen_sample)}'\nexport MI_FAST_TRAIN='{env_text(chosen_train)}'\n")
        print(f"wrote {args.env_out}")
    if args.json:
        by_key = {row.key: row.value for row in rows}
        figures = {
            # the keys scripts/results_table.py reads (float32, eager, as before)
            "train_steps_per_s_tied": by_key["train_steps_per_s[float32]"],
            "sample_1d_s_per_million": by_key["sample_1d_100m_s[float32, trained]"] * 1e6 / PAPER_N,
            "sample_2d_hal_s_per_million": by_key["hal_102500_s[float32]"] * 1e6 / HAL_N,
            **({"sample_2d_s_per_million": by_key["sample_2d_100m_s[float32]"] * 1e6 / PAPER_N} if "sample_2d_100m_s[float32]" in by_key else {}),
            **by_key,
        }
        chosen = {"MI_FAST_SAMPLE": env_text(chosen_sample), "MI_FAST_TRAIN": env_text(chosen_train)}
        with open(args.json, "w") as f:
            json.dump({"info": info, "figures": figures, "tail_check": tail_rows, "chosen": chosen,
                       "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    os.environ.setdefault("MI_PROGRESS", "0")
    main()

"""What the CPU sampler's settings cost: glibc's malloc settings (the Makefile keeps freed memory,
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_, instead of returning every tensor of 128 KiB or more to the
kernel) and the library that multiplies the MLP's matrices (oneDNN, mi_lib.diffusion.nets.Linear, or MKL).

Draws ``--samples`` samples from chapter 2's shipped 1D model (T = 1000 steps, the chapters' pinned CPU kernels)
in a fresh process under each setting, ``--repeats`` times, and prints the seconds and a checksum of the
samples: the first two checksums must agree (the malloc setting moves memory, not numbers), and so must the
third and fifth (what the book runs: oneDNN, then the same with freed memory returned). For reference, one row
puts MKL in its AVX2 mode instead of the pinned compatible one (reproducible only across Intel CPUs, so not the
book's choice: the CI machines have been AMD too). A benchmark, not a test.

    .venv/bin/python benchmarks/cpu_sampler.py                 # 10,000 samples, 2 repeats (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
KEPT = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}

CHILD = """
import sys, time, torch
import mi_lib as mi
if sys.argv[2] == "mkl":
    import mi_lib.diffusion.nets; mi_lib.diffusion.nets._ONEDNN_LINEAR = None  # the MLP's products through MKL (nn.Linear's own path)
spec = mi.MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000, data_seed=0, train=mi.TrainConfig(steps=5_000, batch_size=2_000))
model = mi.mixture_model(spec, mi.Settings(progress=False))
assert model.source == "shipped", model.source
start = time.perf_counter()
x0 = mi.sample(model.model, mi.NoiseSchedule(spec.schedule), int(sys.argv[1]), seed=0, progress=False).x0
print(time.perf_counter() - start, float(x0.double().sum()))
"""


def run(n: int, extra: dict[str, str], linear: str) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in KEPT} | PINNED | extra  # extra last: it may unpin MKL
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), linear], env=env, check=True, capture_output=True, text=True)
    seconds, checksum = out.stdout.split()
    return float(seconds), float(checksum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.samples:,} 1D samples x 1000 steps, {os.cpu_count()} cores, torch threads as set")
    variants = (("MKL, glibc default", {}, "mkl"), ("MKL, memory kept", KEPT, "mkl"),
                ("oneDNN, kept (the book)", KEPT, "onednn"), ("MKL_CBWR=AVX2, kept", KEPT | {"MKL_CBWR": "AVX2"}, "mkl"),
                ("oneDNN, glibc default", {}, "onednn"))
    for name, extra, linear in variants:
        runs = [run(args.samples, extra, linear) for _ in range(args.repeats)]
        times = sorted(s for s, _ in runs)
        print(f"{name:>24}: min {times[0]:6.1f} s  max {times[-1]:6.1f} s  checksum {runs[0][1]!r}")


if __name__ == "__main__":
    main()

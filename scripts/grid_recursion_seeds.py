"""Chapter 7's grid recursion over several seeds: what its seed-to-seed statements rest on.

Runs the chapter's CI-scale configuration (mi_lib.experiments.recursive_training.SCALES["ci"]: generation 0 the shipped
grid model, 3 generations of 5,000 kept of 6,250 candidates, warm-started) for each seed with the filters none,
random and Hal, exactly as the chapter does (recursive_training + mixture_report, k = 4), and writes each seed's
out-of-support share after generation 0 and after the last generation, per filter, to a JSON file that the
chapter reads and prints: Hal's lead over no filter and over the random filter per seed, and the spread of the
two blind arms. Training is not bitwise the same across CPU thread counts, so run it with the chapter's (two on
the CI machine) to make its seed 0 the chapter's run.

    OMP_NUM_THREADS=2 python scripts/grid_recursion_seeds.py --seeds 0 1 2 3 --json results/seeds/07_recursive_training.json

With ``--oversample 1.025`` it runs the paper's keep ratio (100,000 of 102,500) instead of the preset's 80%
(results/seeds/07_recursive_training_keep976.json). Each seed also records every generation's measures per filter
(out-of-support share of the samples and of the kept set, the modes' spread, the total variations), the figures
chapter 7 uses to ask why a filter helps at one keep ratio and not at another.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The chapters' pinned CPU kernels (the Makefile's CPU_NUMERICS, set before torch loads), so that seed s here is
# the chapter's run with seed = s, on this CPU or another (tests/test_repo.py checks the two lists agree).
CPU_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
for _var, _value in CPU_NUMERICS.items():
    os.environ.setdefault(_var, _value)

import torch

import mi_lib as mi
from mi_lib.diffusion.models import MixtureModelSpec
from mi_lib.experiments.recursive_training import SCALES
from mi_lib.experiments.recursion import recursive_training

os.environ.setdefault("MI_PROGRESS", "0")
#: Chapter 7's generation 0 at CI scale (mi_lib.experiments.recursive_training.SCALES["ci"]): the shipped grid checkpoint's spec.
GENERATION_0 = MixtureModelSpec("grid", n_train=20_000, model=mi.MLPConfig(data_dim=2), train=mi.TrainConfig(steps=30_000, batch_size=2_000))

#: The per-generation measures kept for each filter (mi_lib.measure.metrics.mixture_report, of the samples and of the kept set).
MEASURES = ("hallucination", "kept_hallucination", "mode_spread", "kept_mode_spread", "mean_distance", "tv", "mode_tv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--filters", nargs="+", default=["none", "random", "hal"])
    parser.add_argument("--k", type=float, default=4.0)
    parser.add_argument("--oversample", type=float, default=None, help="candidates per kept sample (default: the preset's)")
    parser.add_argument("--json", default=None, help="write the per-seed figures to this file (chapter 7 reads it)")
    args = parser.parse_args()
    start = time.perf_counter()
    settings = mi.Settings.from_environment("cpu").replace(progress=False)  # the cache: $MI_CACHE_DIR
    preset = SCALES["ci"]["recursion"]
    if args.oversample is not None:
        preset = preset.replace(oversample=args.oversample)
    seeds: dict[str, dict] = {}
    for seed in args.seeds:
        config = preset.replace(seed=seed)
        last: dict[str, float] = {}
        per_generation: dict[str, list[dict[str, float]]] = {}
        first = None
        for f in args.filters:
            rows = recursive_training(GENERATION_0, config.replace(filter=f), settings, k=args.k).rows()
            first, last[f] = rows[0]["hallucination"], rows[-1]["hallucination"]
            per_generation[f] = [{key: row[key] for key in MEASURES if key in row} for row in rows]
        seeds[str(seed)] = {"hallucination_generation_0": first, "hallucination_last": last, "generations": per_generation}
        print(f"seed {seed}: generation 0 {first:.2%}; last generation " + ", ".join(f"{f} {v:.2%}" for f, v in last.items()), flush=True)
    print(f"total wall {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} threads")
    if args.json:
        out = {"command": " ".join(["python", *sys.argv]), "torch_threads": torch.get_num_threads(), "commit": mi.storage.results.git_commit(),
               "date": time.strftime("%Y-%m-%d"), "config": repr(preset), "k": args.k, "seeds": seeds}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

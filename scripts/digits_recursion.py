"""Recursive training on real 8x8 digits (chapter 7's MNIST part at CI scale): none / random / Hal filters and the real-data control.

The shipped digits (mi_lib.datasets.digits.load_digits_8x8, 1,797 images) are split once (split seed 0) into 1,300
training digits and 497 held-out ones. A digit classifier (mi_lib.experiments.recursive_digits.train_classifier, seed 0) is fitted to
the training digits; its accuracy on the held-out ones is printed, and its features of the held-out digits are
the reference of every FID-like score. Generation 0 of mi_lib.experiments.recursion.recursive_training is the official MLP
(width 128, data_dim 64) trained on the training digits flattened to 64 values in [-1, 1]; every filter runs on
the same seeds. Per generation it prints, for the model's plain output (the first n_keep candidates, the same
noise for every filter): the FID-like score against the held-out digits, the number of digit classes holding at
least 1% of the samples, the classifier's mean confidence, and the training / sampling wall times. The
reference floor is the same score for n_keep real training digits.

    OMP_NUM_THREADS=1 python scripts/digits_recursion.py --seeds 0 1
    OMP_NUM_THREADS=2 python scripts/digits_recursion.py --seeds 0 1 2 3 --json results/seeds/07b_recursive_digits.json

--json writes the per-seed figures (generation 0's and the last generation's FID-like score of every filter, the
floor, the classifier's accuracy, the command and thread count) for chapter 7's section 7b, which prints them: its
seed-to-seed statements are read from that file, not typed.

Everything is cached by mi_lib.storage.cache ($MI_CACHE_DIR, default ./.mi_cache); point MI_CACHE_DIR at an empty
folder to time a run from scratch. Wall times of cached generations are those recorded when they were computed.

The committed sweep (results/seeds/07b_recursive_digits.json, from the second command above under the chapters'
pinned CPU kernels, so that its seed 0 is section 7b's CI-scale run) is printed by section 7b, which sets its drift
bar (no filter worse than the real-data control by 2) below the smallest gap the sweep measured. CPU training is
not bitwise the same across thread counts, so a one-thread run gives other numbers. For the control ("real": each
generation fine-tuned on 1,000 real training digits drawn afresh instead of on samples) the 'kept' figures are its
plain output, which it does not train on.
"""

from __future__ import annotations

import argparse
import os
import time

# The chapters' pinned CPU kernels (the Makefile's CPU_NUMERICS, set before torch loads), so that seed s here is
# the chapter's run with seed = s, on this CPU or another (tests/test_repo.py checks the two lists agree).
CPU_NUMERICS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
for _var, _value in CPU_NUMERICS.items():
    os.environ.setdefault(_var, _value)

import torch

import mi_lib as mi
from mi_lib.datasets import digits
from mi_lib.experiments import recursive_digits as judge
from mi_lib.experiments.recursion import RecursionConfig, recursive_training
from mi_lib.datasets.shapes import to_model_range

os.environ.setdefault("MI_PROGRESS", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--filters", nargs="+", default=["none", "random", "hal", "real"])
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--n-keep", type=int, default=1000)
    parser.add_argument("--oversample", type=float, default=1.25)
    parser.add_argument("--steps", type=int, default=2000, help="training steps per generation")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--schedule", choices=sorted(mi.SCHEDULE_PRESETS), default="official")
    parser.add_argument("--from-scratch", action="store_true", help="retrain every generation from scratch (the paper); default: warm start")
    parser.add_argument("--n-test", type=int, default=497, help="held-out digits (FID reference, classifier accuracy)")
    parser.add_argument("--json", default=None, help="write the per-seed figures to this file (chapter 7b reads it)")
    args = parser.parse_args()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    images, labels = digits.load_digits_8x8()
    train_idx, test_idx = digits.split_indices(len(images), args.n_test, seed=0)
    start = time.perf_counter()
    clf = judge.train_classifier(images[train_idx], labels[train_idx], seed=0)
    print(f"torch threads: {torch.get_num_threads()}; classifier trained in {time.perf_counter() - start:.2f} s, "
          f"held-out accuracy {judge.accuracy(clf, images[test_idx], labels[test_idx]):.4f} ({args.n_test} digits)")
    reference = judge.classifier_features(clf, images[test_idx])
    data = to_model_range(images[train_idx]).reshape(len(train_idx), -1)  # (1300, 64) in [-1, 1]
    n_eval = min(args.n_keep, len(train_idx))
    floor = judge.digits_report(data[:n_eval], clf, reference)
    accuracy = judge.accuracy(clf, images[test_idx], labels[test_idx])
    print(f"reference floor: {n_eval} real training digits vs held-out: fid {floor['fid']:.2f}, "
          f"{floor['classes_present']} classes, confidence {floor['confidence']:.3f}")

    base = RecursionConfig(
        generations=args.generations,
        n_keep=args.n_keep,
        oversample=args.oversample,
        model=mi.MLPConfig(data_dim=64, width=args.width),
        train=mi.TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr),
        schedule=mi.SCHEDULE_PRESETS[args.schedule],
        warm_start=not args.from_scratch,
    )
    print(f"config: {base}")
    settings = mi.Settings.from_environment("cpu").replace(progress=False)  # the cache: $MI_CACHE_DIR
    final: dict[tuple[int, str], float] = {}
    first: dict[int, float] = {}
    for seed in args.seeds:
        for f in args.filters:
            start = time.perf_counter()
            run = recursive_training(data, base.replace(seed=seed, filter=f), settings)
            elapsed = time.perf_counter() - start
            for g in run.generations:
                r = judge.digits_report(g.samples, clf, reference)
                kept = judge.digits_report(g.kept_x0, clf, reference)
                hist = " ".join(f"{100 * v:.0f}" for v in r["histogram"].tolist())
                print(f"seed {seed} {f:>6} gen {g.generation}: fid {r['fid']:6.2f} (kept {kept['fid']:6.2f}) "
                      f"classes {r['classes_present']:2d} conf {r['confidence']:.3f} hist% [{hist}] "
                      f"train {g.train_wall_time_s:5.1f} s sample {g.sample_wall_time_s:5.1f} s ({g.source})")
                final[(seed, f)] = r["fid"]
                if g.generation == 0:
                    first[seed] = r["fid"]  # generation 0 is shared by every filter
            print(f"seed {seed} {f:>6}: run wall {elapsed:.1f} s", flush=True)
    for seed in args.seeds:
        print(f"seed {seed} last generation fid: " + ", ".join(f"{f} {final[(seed, f)]:.2f}" for f in args.filters))
    print(f"total: wall {time.perf_counter() - wall0:.1f} s, process CPU {time.process_time() - cpu0:.1f} s")
    if args.json:
        import json
        import sys
        from pathlib import Path

        out = {
            "command": " ".join(["python", *sys.argv]), "torch_threads": torch.get_num_threads(), "commit": mi.storage.results.git_commit(),
            "date": time.strftime("%Y-%m-%d"), "accuracy": accuracy, "floor_fid": floor["fid"], "generations": args.generations,
            "seeds": {str(seed): {"fid_generation_0": first[seed], "fid_last": {f: final[(seed, f)] for f in args.filters}} for seed in args.seeds},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

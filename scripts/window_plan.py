"""The GPU campaign's windows (issue 20): which chapters a window runs, and the parameters that fit them into
one device command, chosen from the short benchmark that the same command ran first on that machine.

    python scripts/window_plan.py WINDOW --bench bench.json --left SECONDS --params DIR

prints the window's chapters on one line (what scripts/paper_scale.sh --window runs) and writes
DIR/<chapter> (extra papermill arguments, one per line) for each chapter whose paper-scale default it
changes, with the reason on stderr. Without --bench (the benchmark failed) every chapter keeps its default.

Window 1 runs chapters 2, 3 and 4. Chapter 2's five models (and so chapter 4's, its N = 500k one) ship in
data/checkpoints since window 1 of 2026-12-04, so what is trained is chapter 3's two models, 2 x 100k steps at the
benchmark's training rate (two batched models' rate when it chose batch=1), and their sampling runs the
benchmark's chosen sampler at its measured seconds per sample; what is left of the command's time after
those, per-chapter overheads and a margin goes to chapter 2's histograms: the paper's 100 M samples per
model if that fits, else the largest of 50 M, 20 M, 10 M (the chapter's own default) that does.
Window 2 runs chapter 6 and chapter 7's grid page at their paper-scale defaults; window 7 chapter 8 at its
paper-scale default, once window 1 has shipped chapter 3's grid model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WINDOWS = {
    1: ["02_mode_interpolation_1d", "03_mode_interpolation_2d", "04_score_smoothness"],
    2: ["06_detection", "07_recursive_training"],
    7: ["08_mitigations"],  # needs chapter 3's paper-scale grid model shipped (window 1)
}
#: Chapter 2's sample counts per model, best first (the paper's Fig. 2 draws 100 M).
CH2_COUNTS = (100_000_000, 50_000_000, 20_000_000, 10_000_000)
CH2_MODELS = 5  # four training-set sizes and the moved mode
WINDOW1_TRAIN_STEPS = 2 * 100_000  # chapter 3's grid and diamond (chapter 2's models ship)
WINDOW1_OTHER_SAMPLES = 2 * 1_000_000 + 1_000_000  # chapter 3's two layouts, chapter 4's learned score
OVERHEAD_S = 45.0  # per chapter: kernel start, imports, CUDA start, the figures
EXACT_S = 60.0  # chapter 4: six exact-score runs of 1 M samples in float64, the score figures
MARGIN_S = 60.0


def rates(bench: dict) -> tuple[float, float]:
    """(seconds per sample x 1000 steps of the chosen sampler, training steps/s of the chosen trainer) from
    bench.py's JSON."""
    chosen = bench["chosen"]
    row = next(r for r in bench["tail_check"] if _env_text(r["options"]) == chosen["MI_FAST_SAMPLE"])
    per_sample = row["seconds"] / bench["info"]["tail_samples"]
    figures, train = bench["figures"], chosen["MI_FAST_TRAIN"]
    if "batch=1" in train:
        return per_sample, figures["train_model_steps_per_s[2 batched, float32 + fused Adam + CUDA graph]"]
    return per_sample, figures["train_steps_per_s[float32 + fused Adam + CUDA graph]" if "graph=1" in train else "train_steps_per_s[float32]"]


def _env_text(options: dict) -> str:
    return ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(options.items()))


def plan(window: int, bench: dict | None, left_s: float) -> tuple[dict[str, list[str]], list[str]]:
    """({chapter: extra papermill arguments}, reasons) for ``window`` with ``left_s`` seconds left."""
    if window not in WINDOWS:
        raise SystemExit(f"window {window} is not prepared yet (prepared: {sorted(WINDOWS)})")
    params: dict[str, list[str]] = {}
    reasons: list[str] = []
    if window == 1 and bench is not None:
        per_sample, steps_per_s = rates(bench)
        fixed = (WINDOW1_TRAIN_STEPS / steps_per_s + WINDOW1_OTHER_SAMPLES * per_sample + len(WINDOWS[1]) * OVERHEAD_S + EXACT_S
                 + MARGIN_S)
        room = left_s - fixed
        n = next((c for c in CH2_COUNTS if CH2_MODELS * c * per_sample <= room), CH2_COUNTS[-1])
        reasons.append(f"chapter 2: {n:,} samples per model ({CH2_MODELS} models at {per_sample * 1e6:.2f} s per million = "
                       f"{CH2_MODELS * n * per_sample:.0f} s; {room:.0f} s left for them after {fixed:.0f} s of training at "
                       f"{steps_per_s:,.0f} steps/s, other sampling, overheads and margin)")
        if n != CH2_COUNTS[-1]:
            params["02_mode_interpolation_1d"] = ["-p", "n_samples", str(n)]
    elif bench is None:
        reasons.append("no benchmark figures: every chapter at its paper-scale defaults")
    return params, reasons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("window", type=int)
    parser.add_argument("--bench", type=Path, default=None, help="bench.py --json output from this machine")
    parser.add_argument("--left", type=float, required=True, help="seconds left for the chapters")
    parser.add_argument("--params", type=Path, required=True, help="folder for the per-chapter papermill arguments")
    parser.add_argument("--scale", default="paper", help="the chapters' scale: only paper scale is sized (a CPU dry run keeps the defaults)")
    args = parser.parse_args()
    bench = json.loads(args.bench.read_text()) if args.bench is not None and args.bench.exists() else None
    if args.scale == "paper":
        params, reasons = plan(args.window, bench, args.left)
    else:
        params, reasons = plan(args.window, None, args.left)[0], [f"scale {args.scale}: every chapter at its defaults (a dry run)"]
    args.params.mkdir(parents=True, exist_ok=True)
    for chapter, extra in params.items():
        (args.params / chapter).write_text("\n".join(extra) + "\n")
    for reason in reasons:
        print(f"[window {args.window}] {reason}", file=sys.stderr)
    print(" ".join(WINDOWS[args.window]))


if __name__ == "__main__":
    main()

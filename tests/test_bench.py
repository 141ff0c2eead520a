"""The GPU window's first step, ``benchmarks/bench.py --short``, run through on the CPU at tiny sizes: it picks
the window's fast paths (``--env-out``), so a benchmark broken by a library change would cost a window its
chapters. The figures are not checked (a benchmark asserts nothing); that it runs, writes its JSON with every
section and names the fast paths is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_short_benchmark_runs_through_on_a_cpu(tmp_path):
    out, env_out = tmp_path / "bench.json", tmp_path / "fast.sh"
    tiny = ["--samples", "64", "--tail-samples", "256", "--hal-samples", "64", "--train-steps", "2",
            "--unet-batch", "2", "--unet-steps", "1", "--unet-samples", "16"]
    env = {**os.environ, "MI_CACHE_DIR": str(tmp_path / "cache"), "MI_PROGRESS": "0", "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "benchmarks/bench.py", "--device", "cpu", "--short", *tiny, "--json", str(out),
                          "--env-out", str(env_out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["info"]["short"] is True and figures["info"]["tail_samples"] == 256
    for key in ("train_steps_per_s_tied", "sample_1d_s_per_million", "sample_2d_hal_s_per_million"):  # results_table.py's
        assert figures["figures"][key] > 0, key
    assert set(figures["chosen"]) == {"MI_FAST_SAMPLE", "MI_FAST_TRAIN"}
    printed = run.stdout
    for section in ("(f) tail-equivalence", "fastest that passes", "(b) training", "(c) ", "(d) "):
        assert section in printed, section
    exports = env_out.read_text()
    assert "MI_FAST_SAMPLE=" in exports and "MI_FAST_TRAIN=" in exports, exports

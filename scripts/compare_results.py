"""Compare the numbers two runs of the chapters recorded: which agree exactly, which differ and by how much.

For a check across machines: run the chapters on one (``make test`` leaves its CI-scale results in
``_build/nbval-results/``) and compare them with another's (the committed ``results/``, made by ``make outputs``)::

    .venv/bin/python scripts/compare_results.py results _build/nbval-results [--scale ci]

Prints one line per chapter found in both folders (how many numbers are equal, the largest relative difference),
then each differing number. Exits 0 whatever it finds: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def entry(path: Path, scale: str) -> dict:
    """The numbers of ``scale``'s entry in a results file (``{scale: {"numbers": ...}}``), or {} if it has none."""
    return json.loads(path.read_text()).get(scale, {}).get("numbers", {})


def relative(a: object, b: object) -> float:
    """|a - b| / max(|a|, |b|) for two numbers (0 if equal, inf for other types that differ)."""
    if a == b:
        return 0.0
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
        return abs(a - b) / max(abs(a), abs(b))
    return math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--scale", default="ci")
    args = parser.parse_args()
    for path in sorted(args.first.glob("*.json")):
        other = args.second / path.name
        if not other.is_file():
            continue
        a, b = entry(path, args.scale), entry(other, args.scale)
        keys = sorted(set(a) | set(b))
        gaps = {k: relative(a.get(k), b.get(k)) for k in keys}
        differing = [k for k in keys if gaps[k] > 0]
        worst = max(gaps.values(), default=0.0)
        print(f"{path.stem}: {len(keys) - len(differing)} of {len(keys)} equal; largest relative difference {worst:.2g}")
        for k in differing:
            print(f"    {k}: {a.get(k)!r} vs {b.get(k)!r}")


if __name__ == "__main__":
    main()

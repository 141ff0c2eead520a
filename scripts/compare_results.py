"""Compare the numbers two runs of the chapters recorded: which agree exactly, which differ and by how much.

For a check across machines: run the chapters on one (``make test`` leaves its CI-scale results in
``_build/nbval-results/``) and compare them with another's (the committed ``results/``, made by ``make outputs``)::

    .venv/bin/python scripts/compare_results.py results _build/nbval-results [--scale ci]

Prints one line per chapter found in both folders (how many numbers are equal, the largest relative difference),
then each differing number, and the chapters found in one folder only. Exits 0 whatever the numbers are: it
reports, it does not judge; exits 2 with one line on bad input (a folder that is not one, a file that is not a
results file, no chapter with an entry at ``--scale`` in both folders).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NoReturn


def fail(message: str) -> NoReturn:
    print(f"compare_results: {message}", file=sys.stderr)
    raise SystemExit(2)


def entry(path: Path, scale: str) -> dict | None:
    """The numbers of ``scale``'s entry in a results file (``{scale: {"numbers": {...}}}``), None if it has none."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"{path} is not a readable JSON file ({error})")
    if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
        fail(f"{path} is not a results file ({{scale: {{'numbers': ...}}}})")
    numbers = record.get(scale, {}).get("numbers")
    if numbers is not None and not isinstance(numbers, dict):
        fail(f"{path}'s {scale!r} numbers are not a mapping")
    return numbers


def relative(a: object, b: object) -> float:
    """|a - b| / max(|a|, |b|) for two numbers: 0 if equal (two NaNs included), inf for anything else that differs."""
    if type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))):
        return 0.0
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b))
    return abs(a - b) / max(abs(a), abs(b)) if numeric else math.inf  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--scale", default="ci")
    args = parser.parse_args()
    for folder in (args.first, args.second):
        if not folder.is_dir():
            fail(f"{folder} is not a folder")
    names = sorted({p.name for p in args.first.glob("*.json")} | {p.name for p in args.second.glob("*.json")})
    compared = 0
    for name in names:
        a, b = (entry(f / name, args.scale) if (f / name).is_file() else None for f in (args.first, args.second))
        if a is None or b is None:
            where = args.first if b is None else args.second
            if a is not None or b is not None:
                print(f"{Path(name).stem}: an entry at scale {args.scale!r} only in {where}")
            continue
        compared += 1
        keys = sorted(set(a) | set(b))
        gaps = {k: relative(a.get(k), b.get(k)) for k in keys}
        differing = [k for k in keys if gaps[k] > 0]
        worst = max(gaps.values(), default=0.0)
        print(f"{Path(name).stem}: {len(keys) - len(differing)} of {len(keys)} equal; largest relative difference {worst:.2g}")
        for k in differing:
            print(f"    {k}: {a.get(k)!r} vs {b.get(k)!r}")
    if not compared:
        fail(f"no chapter has an entry at scale {args.scale!r} in both folders")


if __name__ == "__main__":
    main()

"""Take what scripts/paper_scale.sh brought back from the GPU machine into this checkout (make book-paper).

    python scripts/paper_unpack.py FROM [FROM ...] [--results results] [--executed results/executed] [--bench benchmarks/results]
    python scripts/paper_unpack.py FROM [FROM ...] --cache-only [--cache .whl/cache]   # make paper-cache

FROM is a tarball paper-scale-*.tar.gz (or any of its parts, paper-scale-*.tar.gz.part-00-of-NN, ...: a tarball
over 15 MiB comes back in parts, which are joined here; a missing part is one clear error), a folder holding such tarballs (the device tool's files
folder), or an unpacked paper-scale/ folder. For each chapter that ran "ok" (timing.tsv), its executed notebook is copied to
--executed and its results JSON is merged into --results, one scale entry at a time (results/<chapter>.json
keeps its other scales). A chapter that failed or timed out brings no results -- except one stopped by an
AssertionError after it wrote its results (a scientific claim that did not hold at paper scale): its numbers are
merged with the assertion's message under "claim_failed", which the README's table shows, so a claim that fails
on the GPU is reported, not lost. A notebook that did not run ok is used only when no FROM has it "ok" (the book
then shows the error). Later FROMs win over earlier ones. The total and
per-chapter times of every run are printed. A window's short benchmark (bench.json, scripts/paper_scale.sh --window)
goes to --bench as <device>-short.json (the README's performance table reads it). The cache entries a run brought back (trained models, and the
saved state of a training cut off mid-way: *.partial.pt) go to --cache, which the next device call carries
inside .whl, so a chapter -- or a training -- longer than one call can go on. Of two states of one training the
one further on is kept; one whose model has come back is dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _step(state: Path) -> int:
    """How far a saved training state (mi_lib.train's resume file) has got."""
    import torch  # here: the rest of this script needs no torch

    return int(torch.load(state, map_location="cpu", weights_only=True)["step"])


def _joined(first_part: Path, scratch: Path) -> Path:
    """The tarball whose parts are ``<name>.part-00-of-NN``, ``-01-of-NN``, ... beside ``first_part``, joined in
    ``scratch``."""
    base, _, tail = first_part.name.partition(".part-")
    if "-of-" not in tail or not tail.rsplit("-of-", 1)[1].isdigit():
        raise SystemExit(f"{first_part}: not a part named <tarball>.part-<i>-of-<n>")
    n = int(tail.rsplit("-of-", 1)[1])
    parts = sorted(first_part.parent.glob(f"{base}.part-*"))
    if [p.name for p in parts] != [f"{base}.part-{i:02d}-of-{n:02d}" for i in range(n)]:
        raise SystemExit(f"{first_part.parent}: {base} came back in parts {[p.name for p in parts]}, not all {n} of them: "
                         "the device tool left some behind (see its files_left_out)")
    joined = scratch / f"joined-{len(list(scratch.iterdir()))}-{base}"
    with open(joined, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    return joined


def failed_claim(notebook: Path) -> str | None:
    """The message of the AssertionError that stopped ``notebook`` (an executed notebook), or None if something
    else stopped it or nothing did."""
    for cell in json.loads(notebook.read_text()).get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (output.get("evalue") or "(no message)") if output.get("ename") == "AssertionError" else None
    return None


def runs_in(source: Path, scratch: Path) -> list[Path]:
    """The paper-scale/ folders that ``source`` holds, oldest tarball first."""
    if source.is_file():
        if ".part-" in source.name:
            source = _joined(source, scratch)
        dest = scratch / f"{len(list(scratch.iterdir()))}"
        with tarfile.open(source) as tar:
            tar.extractall(dest, filter="data")
        return [dest / "paper-scale"]
    if (source / "timing.tsv").exists() and (source / "executed").is_dir():
        return [source]
    if (source / "paper-scale").is_dir():
        return [source / "paper-scale"]
    parted = {p.name.partition(".part-")[0]: p for p in sorted(source.glob("paper-scale-*.tar.gz.part-*"))}  # one part per tarball
    tarballs = sorted([*source.glob("paper-scale-*.tar.gz"), *parted.values()], key=lambda p: p.name.partition(".part-")[0])
    if not tarballs:
        raise SystemExit(f"{source}: no paper-scale-*.tar.gz, paper-scale/ or timing.tsv in it")
    return [run for t in tarballs for run in runs_in(t, scratch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, metavar="FROM")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--executed", type=Path, default=ROOT / "results" / "executed", help="where executed notebooks go (committed)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".whl" / "cache", help="where brought-back cache entries go")
    parser.add_argument("--cache-only", action="store_true", help="take only the cache entries (between device calls)")
    parser.add_argument("--bench", type=Path, default=ROOT / "benchmarks" / "results", help="where a window's benchmark JSON goes")
    args = parser.parse_args()
    args.executed.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)

    notebooks: dict[str, tuple[bool, Path]] = {}  # chapter -> (ran ok, executed notebook)
    results: list[tuple[str, Path, str | None]] = []  # chapter, its results JSON, the failed claim's message
    total_s, calls = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for source in args.sources:
            for run in runs_in(source, scratch):
                for entry in sorted((run / "cache").glob("*.pt")):
                    args.cache.mkdir(parents=True, exist_ok=True)
                    target = args.cache / entry.name
                    if not target.exists() or entry.name.endswith(".partial.pt") and _step(entry) > _step(target):
                        shutil.copy2(entry, args.cache / entry.name)
                        print(f"cache:    {args.cache / entry.name} ({entry.stat().st_size / 2**20:.1f} MiB)")
                info = (run / "run.txt").read_text() if (run / "run.txt").exists() else ""
                if (run / "bench.json").exists() and not args.cache_only:
                    bench = json.loads((run / "bench.json").read_text())
                    slug = "".join(c if c.isalnum() else "-" for c in bench["info"]["device"].lower()).strip("-")
                    target = args.bench / f"{slug}{'-short' if bench['info'].get('short') else ''}.json"
                    args.bench.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / "bench.json", target)
                    print(f"bench:    {target} (chosen: {bench.get('chosen')})")
                scale = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("scale:")), "?")
                print(f"{source}: {' | '.join(line for line in info.splitlines() if line.startswith(('date:', 'commit:')))}")
                if scale != "paper":
                    print(f"  WARNING: this run is at scale {scale!r}, not paper")
                with open(run / "timing.tsv") as f:
                    for row in csv.DictReader(f, delimiter="\t"):
                        chapter, status, seconds = row["chapter"], row["status"], row["seconds"]
                        print(f"  {chapter:<28} {status:<12} {int(seconds):>6} s")
                        if chapter == "total":
                            total_s, calls = total_s + int(seconds), calls + 1
                            continue
                        nb, ok = run / "executed" / f"{chapter}.ipynb", status == "ok"
                        if nb.exists() and (ok or not notebooks.get(chapter, (False,))[0]):
                            notebooks[chapter] = (ok, nb)
                        written = run / "results" / f"{chapter}.json"
                        claim = failed_claim(nb) if not ok and status.startswith("failed") and nb.exists() and written.exists() else None
                        if (ok or claim is not None) and written.exists():
                            results.append((chapter, written, claim))

        for state in sorted(args.cache.glob("*.partial.pt")) if args.cache.is_dir() else []:
            if (args.cache / state.name.replace(".partial.pt", ".pt")).exists():  # its model came back: done
                state.unlink()
                print(f"cache:    {state} dropped (its model is in the cache)")
        cache_mib = sum(p.stat().st_size for p in args.cache.glob("*.pt")) / 2**20 if args.cache.is_dir() else 0
        if cache_mib > 32:
            print(f"WARNING: {args.cache} holds {cache_mib:.0f} MiB: with the wheels it may pass the 64 MiB a device call carries")
        if args.cache_only:
            return
        for chapter, (ok, nb) in sorted(notebooks.items()):
            shutil.copy2(nb, args.executed / nb.name)
            mib = nb.stat().st_size / 2**20
            print(f"executed: {args.executed / nb.name} ({mib:.1f} MiB)" + ("" if ok else "  (WARNING: did not run ok: the book shows its error)")
                  + ("  (WARNING: over 5 MiB)" if mib > 5 else ""))
        for chapter, path, claim in results:  # in order: later runs overwrite earlier ones, scale by scale
            target = args.results / path.name
            merged = json.loads(target.read_text()) if target.exists() else {}
            new = json.loads(path.read_text())
            if claim is not None:
                for entry in new.values():
                    entry["claim_failed"] = claim
            merged.update(new)
            target.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
            print(f"results:  {target} <- {', '.join(sorted(new))}"
                  + ("" if claim is None else f"  (WARNING: a claim failed after the results were written: {claim})"))

    print(f"device time of these runs: {total_s} s in {calls} call(s) of scripts/paper_scale.sh")
    missing = sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb") if not (args.executed / p.name).exists())
    if missing:
        sys.exit(f"no executed notebook yet for {', '.join(missing)}: run them with scripts/paper_scale.sh and add their FROM")


if __name__ == "__main__":
    main()

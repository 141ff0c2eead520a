"""Take what scripts/paper_scale.sh brought back from the GPU machine into this checkout (make book-paper, paper-cache).

FROM: tarballs paper-scale-*.tar.gz, their parts (<tarball>.part-<i>-of-<n>, joined here), folders holding them, or
unpacked paper-scale/ folders; later ones win. A chapter "ok" in timing.tsv: its executed notebook -> --executed, its
results merged per scale into --results (other scales kept); one stopped by an AssertionError after writing its
results brings them with "claim_failed" (the README's table shows it). bench.json -> --bench/<device>-short.json.
Cache entries -> --cache: of two states of one training the one further on; a state whose model came back goes.
"""

from __future__ import annotations
import argparse, csv, json, shutil, sys, tarfile, tempfile  # noqa: E401
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def step(state: Path) -> int:  # how far a saved training state (mi_lib.train's resume file) has got
    import torch  # only here: the rest needs no torch
    return int(torch.load(state, map_location="cpu", weights_only=True)["step"])

def failed_claim(notebook: Path) -> str | None:
    """The message of the AssertionError that stopped an executed notebook; None if another error or none did."""
    errors = [out for cell in json.loads(notebook.read_text()).get("cells", []) for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    return (errors[0].get("evalue") or "(no message)") if errors and errors[0].get("ename") == "AssertionError" else None

def runs_in(source: Path, scratch: Path) -> list[Path]:
    """The paper-scale/ folders ``source`` holds, in their tarballs' order (their names hold their start times)."""
    if source.is_dir():
        for run in (source, source / "paper-scale"):
            if (run / "executed").is_dir():
                return [run]
        if not (names := sorted({p.name.partition(".part-")[0] for p in source.glob("paper-scale-*.tar.gz*")})):
            raise SystemExit(f"{source}: no paper-scale-*.tar.gz or paper-scale/ in it")
        return [run for name in names for run in runs_in(source / name, scratch)]
    base = source.with_name(source.name.partition(".part-")[0])
    if parts := sorted(base.parent.glob(f"{base.name}.part-*")):
        n = int(tail) if (tail := parts[0].name.rpartition("-of-")[2]).isdigit() else 0
        if [p.name for p in parts] != [f"{base.name}.part-{i:02d}-of-{n:02d}" for i in range(n)]:
            raise SystemExit(f"{base}: came back in parts {[p.name for p in parts]}, not all {n} of them (files_left_out?)")
        source = scratch / f"{len(list(scratch.iterdir()))}.tar.gz"
        source.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(source) as tar:
        tar.extractall(dest := scratch / str(len(list(scratch.iterdir()))), filter="data")
    return [dest / "paper-scale"]

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path, metavar="FROM")
    for name, default in ("results", "results"), ("executed", "results/executed"), ("bench", "benchmarks/results"), ("cache", ".whl/cache"):
        parser.add_argument(f"--{name}", type=Path, default=ROOT / default, help=f"default: {default}")
    parser.add_argument("--cache-only", action="store_true", help="only the cache entries (between device calls)")
    args = parser.parse_args()
    notebooks: dict[str, tuple[bool, Path]] = {}  # chapter -> (ran ok, executed notebook)
    results: list[tuple[Path, str | None]] = []  # results JSON, the failed claim's message
    total = calls = 0
    with tempfile.TemporaryDirectory() as tmp:
        for run in (run for source in args.sources for run in runs_in(source, Path(tmp))):
            for entry in sorted((run / "cache").glob("*.pt")):
                target = args.cache / entry.name
                if not target.exists() or entry.name.endswith(".partial.pt") and step(entry) > step(target):
                    args.cache.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(entry, target)
                    print(f"cache:    {target} ({entry.stat().st_size / 2**20:.1f} MiB)")
            print(" | ".join(line for line in (run / "run.txt").read_text().splitlines() if line.startswith(("date:", "scale:", "commit:"))))
            if (run / "bench.json").exists() and not args.cache_only:
                bench = json.loads((run / "bench.json").read_text())["info"]
                slug = "".join(c if c.isalnum() else "-" for c in bench["device"].lower()).strip("-")
                args.bench.mkdir(parents=True, exist_ok=True)
                print(f"bench:    {shutil.copy2(run / 'bench.json', args.bench / (slug + ('-short' if bench.get('short') else '') + '.json'))}")
            with open(run / "timing.tsv") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    chapter, status, seconds, ok = row["chapter"], row["status"], int(row["seconds"]), row["status"] == "ok"
                    print(f"  {chapter:<28} {status:<12} {seconds:>6} s")
                    total, calls = total + seconds * (chapter == "total"), calls + (chapter == "total")
                    nb, written = run / "executed" / f"{chapter}.ipynb", run / "results" / f"{chapter}.json"
                    if nb.exists() and (ok or not notebooks.get(chapter, (False,))[0]):
                        notebooks[chapter] = (ok, nb)
                    claim = failed_claim(nb) if status.startswith("failed") and nb.exists() else None
                    if written.exists() and (ok or claim is not None):
                        results.append((written, claim))
        for state in sorted(args.cache.glob("*.partial.pt")):
            if state.with_name(state.name.replace(".partial.pt", ".pt")).exists():
                state.unlink()
                print(f"cache:    {state} dropped (its model is in the cache)")
        if args.cache_only:
            return
        for folder in args.executed, args.results:
            folder.mkdir(parents=True, exist_ok=True)
        for chapter, (ok, nb) in sorted(notebooks.items()):
            print(f"executed: {shutil.copy2(nb, args.executed / nb.name)}" + ("" if ok else "  (did not run ok: the book shows its error)"))
        for path, claim in results:  # in order: later runs win, scale by scale
            target, new = args.results / path.name, {scale: {**entry, **({} if claim is None else {"claim_failed": claim})}
                                                      for scale, entry in json.loads(path.read_text()).items()}
            target.write_text(json.dumps({**(json.loads(target.read_text()) if target.exists() else {}), **new}, indent=2, sort_keys=True) + "\n")
            print(f"results:  {target} <- {', '.join(sorted(new))}" + (f"  (a claim failed after the results were written: {claim})" if claim else ""))
    print(f"device time of these runs: {total} s in {calls} call(s) of scripts/paper_scale.sh")
    if missing := sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb") if not (args.executed / p.name).exists()):
        sys.exit(f"no executed notebook yet for {', '.join(missing)}: run them with scripts/paper_scale.sh and add their FROM")

if __name__ == "__main__":
    main()

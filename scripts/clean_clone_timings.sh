#!/usr/bin/env bash
# Time the README's two commands as a new user meets them: each from its own clean clone of this checkout's HEAD
# (virtualenv included), on this machine. Writes benchmarks/durations.json, which scripts/results_table.py
# turns into the durations the README states (make results-table).
#
#   bash scripts/clean_clone_timings.sh            # make book, then make test (about half an hour on 2 cores)
#   bash scripts/clean_clone_timings.sh book       # only these targets
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(book test)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/clean-clone.XXXXXX")
OUT=$ROOT/benchmarks/durations.json
COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD)
[[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no) ]] || echo "note: uncommitted changes are not in the clone: timing $COMMIT"
declare -A SECONDS_OF
for target in "${TARGETS[@]}"; do
    git clone -q "$ROOT" "$WORK/$target"
    echo "make $target in a clean clone of $COMMIT ($WORK/$target, log $WORK/$target.log)"
    start=$(date +%s)
    (cd "$WORK/$target" && make "$target") >"$WORK/$target.log" 2>&1 || { echo "make $target failed: see $WORK/$target.log" >&2; exit 1; }
    SECONDS_OF[$target]=$(($(date +%s) - start))
    echo "make $target: ${SECONDS_OF[$target]} s"
done
args=()
for target in "${!SECONDS_OF[@]}"; do args+=("$target=${SECONDS_OF[$target]}"); done
python3 - "$OUT" "$COMMIT" "${args[@]}" <<'PY'
import json, os, platform, sys, time
from pathlib import Path
out, commit, *pairs = sys.argv[1:]
path = Path(out)
data = json.loads(path.read_text()) if path.exists() else {"durations": {}}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
for pair in pairs:
    target, seconds = pair.split("=")
    data["durations"][f"make {target}"] = {"seconds": int(seconds), "commit": commit, "date": time.strftime("%Y-%m-%d"),
                                           "machine": f"{os.cpu_count()} cores, {cpu}"}
path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
print(f"wrote {path}")
PY

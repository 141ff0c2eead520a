#!/usr/bin/env bash
# Execute chapters at paper scale on the lent GPU machine (no jupyter, no package index there) and pack the
# executed notebooks, their results/*.json and a timing log into ONE tarball under $OUT.
#
#   bash scripts/paper_scale.sh [CHAPTER...]            # from the repo root, with .whl carried (make gpu-wheels)
#   bash scripts/paper_scale.sh --detach [CHAPTER...]   # the same run in its own process session, then --follow
#   bash scripts/paper_scale.sh --follow                # wait for the detached run, bring back its latest tarball
#   bash scripts/paper_scale.sh [--detach] --window N   # window N of the GPU campaign (scripts/window_plan.py): the
#                                                       # short benchmark first, then the window's chapters
#
# A window (issue 20) first runs benchmarks/bench.py --short (with the official code timed beside it if .peer/ holds
# shared/peer, carried): its tail-equivalence check and its check of the captured training step choose MI_FAST_SAMPLE
# and MI_FAST_TRAIN (unless the caller set them), and scripts/window_plan.py sizes the chapters to the time left (chapter
# 2's sample count). The benchmark's JSON and log come back in the tarball (bench.json, logs/bench.log); after the
# chapters, if time is left, the GPU tests of the fast paths run (logs/gpu-tests.log).
#
# Detached: a device command lasts at most 10 minutes, but a process that starts its own session runs on until
# the machine goes back (30 minutes held at most, and 30 s after a call returns if no other call comes). So
# --detach starts the whole run (BUDGET_S default 1440) under setsid, and it and every --follow call wait up to
# FOLLOW_S (default 540) seconds for it, then put its tarball in $OUT -- the final one once it has ended, else a
# snapshot of it now (executed notebooks so far, results, the models and training states written so far). Make
# the next --follow call at once (within 30 s), until one says the run has ended; a machine that goes back
# early loses only what came after the last snapshot. This turns a session's device time into one long run:
# a sampling run longer than one call finishes, and trainings are not cut at call boundaries. LIVE (default
# /tmp/paper-scale-live) is the detached run's folder.
#
# CHAPTER is a notebook's name without .ipynb (02_mode_interpolation_1d) or a prefix of it (02); none: all.
# Each chapter runs with papermill (-p scale paper, --cwd chapters, kernel "python3" = this python3), even if
# an earlier one failed; the script exits 1 if any failed, timed out or was skipped. Give each call only as
# many chapters as fit in one device command (10 minutes): a chapter still running when BUDGET_S is spent is
# stopped and marked "timeout"; the models it finished, and the saved state of a training it was in the middle
# of (mi_lib.train's resume file, written every 2 minutes), come back in the tarball (make paper-cache puts them
# in .whl/cache/, which the next call carries), so the same command run again goes on from there -- a training
# longer than one call too. The tarball is rewritten after every chapter, so it comes back even if the command
# is killed. The device tool returns files of at most 16 MiB: a larger tarball comes back in parts
# (paper-scale-<time>.tar.gz.part-00-of-03, -01-of-03, ...; paper_unpack.py joins them).
#
# Environment (all optional):
#   OUT        where the tarball goes (set by the device tool; default _build/paper-scale-out)
#   SCALE      the chapters' scale (default paper; SCALE=ci is for a dry run of this script on a CPU)
#   BUDGET_S   seconds for all chapters of this call (default 560, inside the device's 600-s command limit;
#              --detach: 1440, set it to the session's device time left less ~6 minutes)
#   FOLLOW_S   how long --detach and --follow wait for the detached run before bringing back a snapshot (540)
#   WHEELS     folder of carried wheels (default .whl); SITE where they are installed (default /tmp/site)
#   MI_CACHE_DIR  the cache of trained models and samples (default .mi_cache in the repo root); entries in
#              $WHEELS/cache/ (carried) are copied into it first
#   CACHE_KB   trained models and training states up to this size go back in the tarball (default 30720: a
#              1.5M-parameter UNet is 6.2 MB, its training state 25 MB); SMALL_KB other entries (default 4096,
#              so sample sets stay behind); OUT_KB all of it together (default 61440, inside the 64 MiB the
#              device tool returns; training states first, then models)
#   PART_KB    tarball parts of at most this many KiB (default 15360, under the device tool's 16 MiB a file)
#   MI_FAST_TRAIN, MI_FAST_SAMPLE  fast paths for the trainings and sampling runs mi_lib starts (mi_lib/fast.py),
#              e.g. MI_FAST_SAMPLE=precision=bf16: pick them from `make bench` on that machine; they enter the cache
#              keys and results/*.json (the README's table names them), and are checked before any chapter runs
# What comes back: $OUT/paper-scale-<time>.tar.gz holding paper-scale/{executed/*.ipynb, results/*.json,
# cache/*.pt, logs/*.log, timing.tsv, run.txt}, and $OUT/timing.tsv. Here again: make paper-cache FROM=...
# (cache entries -> .whl/cache/ for the next call), make book-paper FROM=... (results, the HTML book).

set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
MODE=run
case ${1:-} in --detach | --follow) MODE=${1#--}; shift ;; esac
WINDOW=${WINDOW:-}
if [[ ${1:-} == --window ]]; then
    [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "[paper_scale] --window takes a window number" >&2; exit 2; }
    WINDOW=$2; shift 2
    (($# == 0)) || { echo "[paper_scale] --window takes no chapters (the window names them)" >&2; exit 2; }
    read -ra WINDOW_CHAPTERS <<<"$(python3 -c 'import sys; sys.path.insert(0, "scripts"); import window_plan as w; print(" ".join(w.WINDOWS[int(sys.argv[1])]))' "$WINDOW" 2>/dev/null)" \
        && ((${#WINDOW_CHAPTERS[@]})) || { echo "[paper_scale] window $WINDOW is not prepared (scripts/window_plan.py WINDOWS)" >&2; exit 2; }
    set -- "${WINDOW_CHAPTERS[@]}"
fi
LIVE=${LIVE:-/tmp/paper-scale-live}
SCALE=${SCALE:-paper}
if [[ $MODE == detach ]]; then BUDGET_S=${BUDGET_S:-1440}; else BUDGET_S=${BUDGET_S:-560}; fi
FOLLOW_S=${FOLLOW_S:-540}
CACHE_KB=${CACHE_KB:-30720}
SMALL_KB=${SMALL_KB:-4096}
OUT_KB=${OUT_KB:-61440}
PART_KB=${PART_KB:-15360}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
OUT=${OUT:-$REPO/_build/paper-scale-out}
export MI_CACHE_DIR=${MI_CACHE_DIR:-$REPO/.mi_cache}
START=$SECONDS

say() { echo "[paper_scale] $*" | tee -a "$PACK/run.txt"; }

pack() {  # pack DEST: the tarball of $PACK with this run's new cache entries -> DEST (default $OUT), rewritten whole
    # (staged in a copy, tmp + rename in DEST: never half-written, and a --follow snapshot can pack while the run
    # goes on), within what the device tool returns (OUT_KB in all): training states first (they hold the most
    # device time), then trained models (each at most CACHE_KB, oldest first), then small entries (at most SMALL_KB; sample
    # sets stay behind, they are recomputed)
    local dest=${1:-$OUT} stage left f kb
    stage=$(mktemp -d "$WORK/stage.XXXXXX") || return
    cp -r "$PACK" "$stage/paper-scale" && mkdir -p "$stage/paper-scale/cache" || { rm -rf "$stage"; return 1; }
    left=$(( OUT_KB - $(du -sk "$stage/paper-scale" | cut -f1) - 64 ))
    while IFS= read -r f; do
        [[ -n $f ]] || continue
        kb=$(( ($(stat -c %s "$f") + 1023) / 1024 ))
        if (( kb <= left )); then cp "$f" "$stage/paper-scale/cache/" && left=$(( left - kb )); else say "not brought back (no room): ${f##*/}"; fi
    done < <(
        find "$MI_CACHE_DIR" -maxdepth 1 -type f -name '*.partial.pt' -newer "$WORK/started" -size -"${CACHE_KB}k" 2>/dev/null
        # oldest first: a recursion's early generations are what a later session needs first to go on
        find "$MI_CACHE_DIR" -maxdepth 1 -type f -name '*-model-*.pt' ! -name '*.partial.pt' -newer "$WORK/started" -size -"${CACHE_KB}k" \
            -printf '%T@ %p\n' 2>/dev/null | sort -n | cut -d' ' -f2-
        find "$MI_CACHE_DIR" -maxdepth 1 -type f -name '*.pt' ! -name '*-model-*.pt' ! -name '*.partial.pt' -newer "$WORK/started" -size -"${SMALL_KB}k" 2>/dev/null
    )
    mkdir -p "$dest" && cp "$PACK/timing.tsv" "$dest/timing.tsv"
    local tmp="$dest/.paper-scale-$STAMP.tmp" name="paper-scale-$STAMP.tar.gz" part n i
    rm -rf "$tmp" && mkdir -p "$tmp" || { rm -rf "$stage"; return 1; }
    tar -czf "$tmp/$name" -C "$stage" paper-scale || { rm -rf "$stage" "$tmp"; return 1; }
    rm -rf "$stage"
    if (( $(stat -c %s "$tmp/$name") > PART_KB * 1024 )); then  # parts named .part-<i>-of-<n>, so a missing one shows
        split -b "${PART_KB}k" -d -a 2 "$tmp/$name" "$tmp/part-" || return
        rm -f "$tmp/$name"
        n=$(find "$tmp" -maxdepth 1 -name 'part-*' | wc -l)
        for part in "$tmp"/part-*; do i=${part##*/part-}; mv "$part" "$tmp/$name.part-$i-of-$(printf %02d "$n")"; done
    fi
    rm -f "$dest/$name" "$dest/$name".part-*
    mv -f "$tmp"/* "$dest"/ && rmdir "$tmp"
}

follow() {  # wait up to FOLLOW_S for the detached run in $LIVE, then its tarball -> $OUT: the final one if it has
    # ended, else a snapshot taken now. Returns the run's exit status once it has ended, 0 while it goes on, 3 if
    # it died without ending (killed).
    local waited=0 pid
    if [[ $MODE == detach ]]; then  # the run just detached writes it first thing
        for _ in $(seq 150); do [[ -s $LIVE/env || -e $LIVE/exit ]] && break; sleep 0.2; done
    fi
    [[ -s $LIVE/env ]] || { echo "[paper_scale] no detached run in $LIVE (start one with --detach)" >&2; return 2; }
    # shellcheck source=/dev/null
    source "$LIVE/env"  # the live run's WORK, PACK, STAMP, MI_CACHE_DIR and size limits
    pid=$(cat "$LIVE/pid" 2>/dev/null)
    while [[ ! -e $LIVE/exit ]] && ((waited < FOLLOW_S)) && kill -0 "$pid" 2>/dev/null; do sleep 5; waited=$((waited + 5)); done
    mkdir -p "$OUT"
    echo "----- the detached run's log (last 40 lines) -----"; tail -n 40 "$LIVE/log"
    local log; log=$(ls -t "$PACK"/logs/*.log 2>/dev/null | head -n1)
    [[ -z $log ]] || { echo "----- ${log##*/} (last 15 lines) -----"; tail -n 15 "$log"; }
    echo "----- timing so far -----"; cat "$PACK/timing.tsv"
    if [[ -e $LIVE/exit ]]; then
        cp "$LIVE"/out/* "$OUT"/ 2>/dev/null
        echo "[paper_scale] the detached run has ENDED (exit $(cat "$LIVE/exit")); its final tarball is in \$OUT"
        return "$(cat "$LIVE/exit")"
    fi
    pack "$OUT"
    if kill -0 "$pid" 2>/dev/null; then
        echo "[paper_scale] the detached run GOES ON ($((SECONDS - ${1:-0}))s of this call): a snapshot of it is in \$OUT; call --follow again NOW (the machine goes back 30 s after a call)"
        return 0
    fi
    echo "[paper_scale] the detached run DIED without ending: a snapshot of what it left is in \$OUT" >&2
    return 3
}

if [[ $MODE == follow ]]; then
    (($# == 0)) || { echo "[paper_scale] --follow takes no chapters" >&2; exit 2; }
    follow 0; exit
fi

# 1. which chapters (names checked before anything is installed)
CHAPTERS=()
if (($# == 0)); then set -- chapters/*.ipynb; fi
for arg in "$@"; do
    arg=${arg#chapters/}; arg=${arg%.ipynb}
    matches=(chapters/"$arg"*.ipynb)
    if [[ -f chapters/$arg.ipynb ]]; then CHAPTERS+=("$arg")
    elif ((${#matches[@]} == 1)) && [[ -f ${matches[0]} ]]; then m=${matches[0]#chapters/}; CHAPTERS+=("${m%.ipynb}")
    else echo "[paper_scale] no single chapter matches '$arg' in chapters/" >&2; exit 2; fi
done

if [[ $MODE == detach ]]; then  # the same script, in its own process session: it outlives this call
    if [[ -s $LIVE/pid && ! -e $LIVE/exit ]] && kill -0 "$(cat "$LIVE/pid")" 2>/dev/null; then
        echo "[paper_scale] a detached run is already going in $LIVE: --follow it" >&2; exit 2
    fi
    rm -rf "$LIVE" && mkdir -p "$LIVE/out" || exit 2
    OUT=$LIVE/out BUDGET_S=$BUDGET_S PAPER_SCALE_LIVE=$LIVE WINDOW=$WINDOW \
        python3 -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' bash "$REPO/scripts/paper_scale.sh" "${CHAPTERS[@]}" \
        >"$LIVE/log" 2>&1 </dev/null &
    echo "[paper_scale] detached: ${CHAPTERS[*]} (budget ${BUDGET_S}s, log $LIVE/log)"
    follow "$START"; exit
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/paper-scale.XXXXXX")
PACK=$WORK/paper-scale
mkdir -p "$OUT" "$PACK/executed" "$PACK/results" "$PACK/logs" || exit 2
printf 'chapter\tstatus\tseconds\n' >"$PACK/timing.tsv"
if [[ -n ${PAPER_SCALE_LIVE:-} ]]; then  # the detached run: what --follow needs to find, wait for and snapshot it
    echo $$ >"$PAPER_SCALE_LIVE/pid"
    trap 'echo $? >"$PAPER_SCALE_LIVE/exit"' EXIT
    declare -p WORK PACK STAMP MI_CACHE_DIR CACHE_KB SMALL_KB OUT_KB PART_KB 2>/dev/null | sed 's/^declare -[-a-z]* //' >"$PAPER_SCALE_LIVE/env.tmp"
    mv "$PAPER_SCALE_LIVE/env.tmp" "$PAPER_SCALE_LIVE/env"
fi

# 2. the carried wheels -> $SITE (the device tool's recipe); python3 is the machine's, the one with torch.
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
        || { say "pip install of $WHEELS/*.whl failed"; exit 2; }
    export PYTHONPATH=$SITE
    # --no-deps trusts that the machine has what the wheels need (gpu_wheels.py's GPU_HAS): say where not.
    python3 - "$SITE" <<'PY' 2>&1 | tee -a "$PACK/run.txt"
import importlib.metadata as md, sys
from packaging.requirements import Requirement
for dist in md.distributions(path=[sys.argv[1]]):
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            print(f"WARNING: {dist.metadata['Name']} needs {req}: not installed"); continue
        if not req.specifier.contains(have, prereleases=True):
            print(f"WARNING: {dist.metadata['Name']} needs {req}: {have} is installed")
PY
else
    say "no wheels in $WHEELS: using the papermill and ipykernel of $(command -v python3)"
fi
# mi_lib from the tree itself (no pip install); the kernel inherits this environment.
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export MI_RESULTS_DIR=$PACK/results MI_PROGRESS=0 PYTHONHASHSEED=0 PYTHONUNBUFFERED=1
export MPLBACKEND=module://matplotlib_inline.backend_inline
# The carried cache: entries that earlier calls brought back (make paper-cache puts them in .whl/cache/), so a
# chapter longer than one call finishes over several (cache keys hash the config and mi_lib's source).
if [[ -d $WHEELS/cache ]]; then mkdir -p "$MI_CACHE_DIR" && cp -n "$WHEELS"/cache/*.pt "$MI_CACHE_DIR"/ 2>/dev/null; fi
touch "$WORK/started"
# Jupyter's and IPython's folders under $WORK: kernel "python3" is ipykernel's spec for this python3 alone,
# whatever else the machine has in ~/.local or /usr/share/jupyter.
export JUPYTER_PATH=$WORK/jupyter/share/jupyter JUPYTER_CONFIG_DIR=$WORK/jupyter/config JUPYTER_DATA_DIR=$WORK/jupyter/data
export JUPYTER_RUNTIME_DIR=$WORK/jupyter/runtime IPYTHONDIR=$WORK/ipython MPLCONFIGDIR=$WORK/mpl JUPYTER_PLATFORM_DIRS=1
python3 -m ipykernel install --prefix "$WORK/jupyter" --name python3 >/dev/null \
    || { say "ipykernel install failed: are the wheels carried?"; exit 2; }
KERNEL=$(python3 -c 'from jupyter_client.kernelspec import KernelSpecManager as K; print(" ".join(K().get_kernel_spec("python3").argv[:3]))') \
    || { say "kernel python3 does not resolve"; exit 2; }

# 3. the commit, for results/*.json: the stamp that make gpu-wheels wrote into the wheel folder (run it right before
# the device calls) wins over a .git that came along: the device tool's copy of .git was seen (2026-12-04) to hold the
# session's first commit, not the tree's. mi_lib's `git rev-parse` then gets the stamp from a stand-in git.
git_head=$(git rev-parse --short=12 HEAD 2>/dev/null)
if [[ -s $WHEELS/COMMIT ]]; then
    c=$(head -n1 "$WHEELS/COMMIT")
    mkdir -p "$WORK/bin"
    { echo '#!/bin/sh'
      echo '# stands in for git (no .git here): the commit make gpu-wheels stamped'
      echo "case \"\$1\" in rev-parse) echo '${c%-dirty}' ;; status) [ '$c' != '${c%-dirty}' ] && echo ' M dirty' ;; *) exit 1 ;; esac"
      echo 'exit 0'; } >"$WORK/bin/git"
    chmod +x "$WORK/bin/git"
    export PATH=$WORK/bin:$PATH
    COMMIT="$c (stamp from $WHEELS/COMMIT${git_head:+; the .git here says $git_head})"
elif [[ -n $git_head ]]; then
    COMMIT="$git_head (git)"
else
    COMMIT="unknown (no .git and no $WHEELS/COMMIT)"
fi


{ echo "date: $STAMP (UTC)"; echo "scale: $SCALE"; echo "commit: $COMMIT"; echo "chapters: ${CHAPTERS[*]}"
  echo "python: $(command -v python3) $(python3 -c 'import platform; print(platform.python_version())')"
  echo "kernel python3: $KERNEL"
  python3 -c 'import torch, papermill; print("torch", torch.__version__, "| cuda:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "| papermill", papermill.__version__)'
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "fast paths: MI_FAST_TRAIN='${MI_FAST_TRAIN:-}' MI_FAST_SAMPLE='${MI_FAST_SAMPLE:-}'"
} 2>&1 | tee -a "$PACK/run.txt"
if ! err=$(python3 -c 'import mi_lib as mi; mi.Settings.from_environment("cpu")' 2>&1); then
    say "${err##*$'\n'}"; say "nothing run: fix MI_FAST_TRAIN / MI_FAST_SAMPLE"; exit 2
fi
FAILED=()

# 3b. a window: the short benchmark picks the fast paths and sizes the chapters to the time left
if [[ -n $WINDOW ]]; then
    official=()
    [[ -f .peer/time_official.py ]] && official=(--official .peer/time_official.py)
    say "window $WINDOW: the short benchmark${official:+ (with the official code timed beside it)}"
    t0=$SECONDS
    timeout --kill-after=15 "${BENCH_S:-240}" python3 benchmarks/bench.py --short "${official[@]}" --json "$PACK/bench.json" \
        --env-out "$WORK/fast.env" >"$PACK/logs/bench.log" 2>&1
    rc=$?
    printf 'bench\t%s\t%d\n' "$( ((rc == 0)) && echo ok || echo "failed($rc)")" $((SECONDS - t0)) >>"$PACK/timing.tsv"
    grep -E '^(official figures|\(a\)|\(b\)|\(c\)|    |chosen)' "$PACK/logs/bench.log" | tee -a "$PACK/run.txt"
    if ((rc == 0)); then
        if [[ -z ${MI_FAST_SAMPLE:-}${MI_FAST_TRAIN:-} ]]; then
            # shellcheck source=/dev/null
            source "$WORK/fast.env"
            say "fast paths from the benchmark: MI_FAST_TRAIN='$MI_FAST_TRAIN' MI_FAST_SAMPLE='$MI_FAST_SAMPLE'"
        else
            say "fast paths kept as the caller set them: MI_FAST_TRAIN='${MI_FAST_TRAIN:-}' MI_FAST_SAMPLE='${MI_FAST_SAMPLE:-}'"
        fi
    else
        tail -n 25 "$PACK/logs/bench.log"; say "the benchmark failed ($rc): chapters with the caller's fast paths and their defaults"
    fi
    python3 scripts/window_plan.py "$WINDOW" --bench "$PACK/bench.json" --left $((BUDGET_S - (SECONDS - START))) \
        --params "$WORK/params" --scale "$SCALE" 2>&1 >/dev/null | tee -a "$PACK/run.txt"
    pack
fi

# 4. the chapters, one after the other
for ch in "${CHAPTERS[@]}"; do
    left=$((BUDGET_S - (SECONDS - START)))
    if ((left < 20)); then
        printf '%s\tskipped\t0\n' "$ch" >>"$PACK/timing.tsv"; FAILED+=("$ch(skipped)"); say "$ch: skipped, budget spent"; continue
    fi
    extra=()
    [[ -s ${WORK}/params/$ch ]] && mapfile -t extra <"$WORK/params/$ch"
    say "$ch: papermill -p scale $SCALE ${extra[*]} (at most ${left}s)"
    t0=$SECONDS
    MI_STATIC_WIDGETS=1 timeout --kill-after=15 "$left" python3 -m papermill "chapters/$ch.ipynb" "$PACK/executed/$ch.ipynb" \
        -p scale "$SCALE" "${extra[@]}" -k python3 --cwd chapters --no-progress-bar --log-output >"$PACK/logs/$ch.log" 2>&1
    rc=$?
    dt=$((SECONDS - t0))
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout; FAILED+=("$ch(timeout)") ;;
        *) status="failed($rc)"; FAILED+=("$ch(rc=$rc)"); tail -n 25 "$PACK/logs/$ch.log" ;;
    esac
    printf '%s\t%s\t%d\n' "$ch" "$status" "$dt" >>"$PACK/timing.tsv"
    say "$ch: $status in ${dt}s"
    pack
done

# 5. a window with time left: the GPU tests of the fast paths (what the benchmark checked, as tests)
left=$((BUDGET_S - (SECONDS - START)))
if [[ -n $WINDOW ]] && ((left > 60)); then
    say "GPU tests of the fast paths (at most ${left}s)"
    t0=$SECONDS
    timeout --kill-after=10 "$left" python3 -m pytest tests/test_gpu.py tests/test_fused.py -q -p no:cacheprovider -x \
        -k "graph or fused or noise or chunk" >"$PACK/logs/gpu-tests.log" 2>&1
    rc=$?
    printf 'gpu-tests\t%s\t%d\n' "$( ((rc == 0)) && echo ok || echo "failed($rc)")" $((SECONDS - t0)) >>"$PACK/timing.tsv"
    tail -n 3 "$PACK/logs/gpu-tests.log" | tee -a "$PACK/run.txt"
fi

printf 'total\t%s\t%d\n' "$( ((${#FAILED[@]} == 0)) && echo ok || echo failed)" $((SECONDS - START)) >>"$PACK/timing.tsv"
pack
say "total $((SECONDS - START))s; tarball $OUT/paper-scale-$STAMP.tar.gz* ($(du -ch "$OUT/paper-scale-$STAMP.tar.gz"* | tail -n1 | cut -f1))"
cat "$PACK/timing.tsv"
if ((${#FAILED[@]})); then say "not ok: ${FAILED[*]}"; exit 1; fi

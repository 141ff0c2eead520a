#!/usr/bin/env bash
# Chapters at paper scale on the lent GPU machine (torch; no jupyter, no package index), .whl carried (make gpu-wheels):
#   bash scripts/paper_scale.sh [CHAPTER...]   # names or unique prefixes (02); none: all chapters
#   bash scripts/paper_scale.sh --window N     # benchmarks/bench.py --short (it picks MI_FAST_*), then window N
# After every chapter $OUT gets paper-scale-<time>.tar.gz (parts .part-<i>-of-<n> if larger than PART_KB) of
# paper-scale/{executed,results,logs,cache}/, timing.tsv, run.txt, bench.json; and timing.tsv. Exit 1: a chapter not ok.
# Env: OUT, SCALE (paper; ci: a CPU dry run), BUDGET_S, BENCH_S, WHEELS, SITE, MI_CACHE_DIR, CACHE_KB (each cache entry
# brought back), OUT_KB (all of $OUT), PART_KB, MI_FAST_TRAIN / MI_FAST_SAMPLE (mi_lib/settings.py): defaults below.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD START=$SECONDS WINDOW= && die() { echo "[paper_scale] $*" >&2; exit 2; }
declare -A PARAMS=()
if [[ ${1:-} == --window ]]; then
    (($# == 2)) || die "usage: --window N (a window names its chapters)"
    case ${WINDOW:=$2} in  # chapter 2: 5 models x 20 M samples, ~170 s with the fused bf16 sampler on the H200
        1) set -- 02_mode_interpolation_1d 03_mode_interpolation_2d 04_score_smoothness
           PARAMS[02_mode_interpolation_1d]="-p n_samples 20000000" ;;
        2) set -- 06_detection 07_recursive_training && PARAMS[06_detection]="-p n_images 0" ;;  # 6: the mixtures alone
        3 | 4) set -- 05_shapes_hands ;;  # its UNets (shapes, then hands) train across calls, resumed (make paper-cache)
        5) set -- 05_shapes_hands 06_detection 07c_recursive_shapes ;;  # from the UNets windows 3 and 4 shipped
        6) set -- 07b_recursive_digits ;;  # MNIST through a UNet, generation by generation across calls
        7) set -- 08_mitigations ;;  # once window 1 has shipped chapter 3's grid model
        *) die "window $WINDOW is not one of 1-7" ;; esac
fi
CHAPTERS=()
(($#)) || set -- chapters/*.ipynb
for arg; do
    arg=${arg#chapters/} && arg=${arg%.ipynb} && m=(chapters/"$arg"*.ipynb)
    if [[ -f chapters/$arg.ipynb ]]; then CHAPTERS+=("$arg")
    elif ((${#m[@]} == 1)) && [[ -f ${m[0]} ]]; then m=${m[0]#chapters/} && CHAPTERS+=("${m%.ipynb}")
    else die "no single chapter matches '$arg' in chapters/"; fi
done
SCALE=${SCALE:-paper} BUDGET_S=${BUDGET_S:-560} CACHE_KB=${CACHE_KB:-30720} OUT_KB=${OUT_KB:-61440} PART_KB=${PART_KB:-15360}
WHEELS=${WHEELS:-.whl} SITE=${SITE:-/tmp/site} OUT=${OUT:-$REPO/_build/paper-scale-out}
export MI_CACHE_DIR=${MI_CACHE_DIR:-$REPO/.mi_cache}
STAMP=$(date -u +%Y%m%d-%H%M%S) WORK=$(mktemp -d "${TMPDIR:-/tmp}/paper-scale.XXXXXX") || exit 2
PACK=$WORK/paper-scale
mkdir -p "$OUT" "$PACK"/{executed,results,logs} "$MI_CACHE_DIR" || exit 2
printf 'chapter\tstatus\tseconds\n' >"$PACK/timing.tsv"
say() { echo "[paper_scale] $*" | tee -a "$PACK/run.txt"; }
fast_ok() { err=$(python3 -c 'import mi_lib as mi; mi.Settings.from_environment("cpu")' 2>&1) || { say "${err##*$'\n'}: nothing run"; pack; exit 2; }; }

pack() {  # $PACK and this run's new cache entries -> $OUT, each file written whole (tmp + rename)
    local stage=$WORK/stage tmp=$OUT/.tmp-$STAMP name=paper-scale-$STAMP.tar.gz left f kb size n
    rm -rf "$stage" "$tmp" && mkdir -p "$stage" "$tmp" && cp -r "$PACK" "$stage/" && mkdir -p "$stage/paper-scale/cache" || return
    left=$((OUT_KB - $(du -sk "$stage" | cut -f1) - 64))
    while IFS= read -r f; do  # training states first, then models, oldest first; sample sets stay behind
        kb=$((($(stat -c %s "$f") + 1023) / 1024))
        if ((kb <= left)); then cp "$f" "$stage/paper-scale/cache/" && left=$((left - kb)); else say "not brought back (no room): ${f##*/}"; fi
    done < <(find "$MI_CACHE_DIR" -maxdepth 1 -type f -newer "$WORK/started" -size -"${CACHE_KB}k" \( -name '*.partial.pt' \
        -printf '0 0 %p\n' -o -name '*-model-*.pt' -printf '1 %T@ %p\n' \) | sort -k1,1n -k2,2n | cut -d' ' -f3-)
    tar -czf "$tmp/$name" -C "$stage" paper-scale && cp "$PACK/timing.tsv" "$tmp/" && size=$(stat -c %s "$tmp/$name") || return
    ((size <= PART_KB * 1024)) || { n=$(printf %02d $(((size + PART_KB * 1024 - 1) / (PART_KB * 1024))))  # parts name their count
        split -b "${PART_KB}k" -d -a 2 --additional-suffix="-of-$n" "$tmp/$name" "$tmp/$name.part-" && rm "$tmp/$name" || return; }
    rm -f "$OUT/$name" "$OUT/$name".part-* && mv -f "$tmp"/* "$OUT"/ && rmdir "$tmp"
}
if compgen -G "$WHEELS/*.whl" >/dev/null; then  # python3: the machine's, with torch
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl || die "pip install failed"
    export PYTHONPATH=$SITE
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} MI_RESULTS_DIR=$PACK/results MI_PROGRESS=0 MI_STATIC_WIDGETS=1 PYTHONHASHSEED=0 \
    PYTHONUNBUFFERED=1 MPLBACKEND=module://matplotlib_inline.backend_inline
cp -n "$WHEELS"/cache/*.pt "$MI_CACHE_DIR"/ 2>/dev/null  # what earlier calls brought back (make paper-cache)
touch "$WORK/started"
J=$WORK/jupyter  # Jupyter's folders of this run alone: kernel "python3" is this python3, whatever the machine has
export JUPYTER_PATH=$J/share/jupyter JUPYTER_CONFIG_DIR=$J/config JUPYTER_DATA_DIR=$J/data JUPYTER_RUNTIME_DIR=$J/runtime \
    IPYTHONDIR=$WORK/ipython MPLCONFIGDIR=$WORK/mpl JUPYTER_PLATFORM_DIRS=1
python3 -m ipykernel install --prefix "$J" --name python3 >/dev/null || die "ipykernel install failed: are the wheels carried?"
COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) (git)"
if [[ -s $WHEELS/COMMIT ]]; then  # results record make gpu-wheels' stamp (the device's .git may be stale): a stand-in git
    c=$(head -n1 "$WHEELS/COMMIT") && COMMIT="$c (stamp from $WHEELS/COMMIT)" && mkdir -p "$WORK/bin" && export PATH=$WORK/bin:$PATH
    printf '#!/bin/sh\ncase "$1" in rev-parse) echo %s ;; status) [ %s = %s ] || echo " M x" ;; *) exit 1 ;; esac\n' \
        "${c%-dirty}" "$c" "${c%-dirty}" >"$WORK/bin/git" && chmod +x "$WORK/bin/git"
fi
{ echo "date: $STAMP (UTC)"; echo "scale: $SCALE"; echo "commit: $COMMIT"; echo "chapters: ${CHAPTERS[*]}"
  python3 -c 'import torch, papermill as p; gpu = torch.cuda.is_available() and torch.cuda.get_device_name(0)
print("torch", torch.__version__, "| cuda:", gpu or "none", "| papermill", p.__version__)'; } 2>&1 | tee -a "$PACK/run.txt"
fast_ok
if [[ -n ${WINDOW:-} ]]; then  # the short benchmark's checks choose the fast paths unless the caller did; a second call
    FAST=$MI_CACHE_DIR/window-fast.env official=() rc=0 t0=$SECONDS  # on the warm machine reuses the first call's choice
    [[ -f .peer/time_official.py ]] && official=(--official .peer/time_official.py)
    [[ -s $FAST ]] || { say "window $WINDOW: benchmarks/bench.py --short ${official[*]}"; timeout --kill-after=15 "${BENCH_S:-240}" \
        python3 benchmarks/bench.py --short "${official[@]}" --json "$PACK/bench.json" --env-out "$FAST.tmp" >"$PACK/logs/bench.log" 2>&1
        rc=$? && tail -n 20 "$PACK/logs/bench.log" && ((rc == 0)) && mv "$FAST.tmp" "$FAST"; }
    printf 'bench\t%s\t%d\n' "$( ((rc)) && echo "failed($rc)" || echo ok)" $((SECONDS - t0)) >>"$PACK/timing.tsv"
    ((rc)) || [[ -n ${MI_FAST_SAMPLE:-}${MI_FAST_TRAIN:-} ]] || source "$FAST"
    say "fast paths: MI_FAST_TRAIN='${MI_FAST_TRAIN:-}' MI_FAST_SAMPLE='${MI_FAST_SAMPLE:-}' (benchmark rc $rc)"
    fast_ok && pack
fi
FAILED=()
for ch in "${CHAPTERS[@]}"; do
    left=$((BUDGET_S - (SECONDS - START))) t0=$SECONDS status=skipped
    if ((left >= 20)); then
        say "$ch: papermill -p scale $SCALE ${PARAMS[$ch]:+${PARAMS[$ch]} }(at most ${left}s)"
        timeout --kill-after=15 "$left" python3 -m papermill "chapters/$ch.ipynb" "$PACK/executed/$ch.ipynb" -p scale "$SCALE" \
            ${PARAMS[$ch]:-} -k python3 --cwd chapters --no-progress-bar --log-output >"$PACK/logs/$ch.log" 2>&1
        rc=$? && case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status="failed($rc)" && tail -n 25 "$PACK/logs/$ch.log" ;; esac
    fi
    [[ $status == ok ]] || FAILED+=("$ch($status)")
    printf '%s\t%s\t%d\n' "$ch" "$status" $((SECONDS - t0)) >>"$PACK/timing.tsv" && say "$ch: $status in $((SECONDS - t0))s"
    pack
done
printf 'total\t%s\t%d\n' "$( ((${#FAILED[@]})) && echo failed || echo ok)" $((SECONDS - START)) >>"$PACK/timing.tsv"
pack && say "total $((SECONDS - START))s: $(cd "$OUT" && du -ch paper-scale-"$STAMP".tar.gz* | tail -n1)" && cat "$PACK/timing.tsv"
((${#FAILED[@]} == 0)) || { say "not ok: ${FAILED[*]}"; exit 1; }

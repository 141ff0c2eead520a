# Build / test toolchain for the Mode Interpolation book.
#   make venv                 create/refresh .venv from requirements.txt (+ kernel "python3")
#   make book     [SCALE=ci]  render the book: each chapter's paper-scale run (results/executed/) where it is current, else
#                             the committed chapter (its CI-scale outputs, which make test checks), under a banner naming
#                             the scale, device and commit (scripts/book_sources.py); SCALE=paper: the campaign's executed
#                             notebooks only. Executes nothing
#   make executed [SCALE=ci]  execute chapters/*.ipynb with papermill -> _build/executed/$(SCALE)/
#   make book-executed [SCALE=ci]  make executed, then make render (every chapter run again at SCALE)
#   make render   [SCALE=ci]  render _build/executed/$(SCALE)/ with Jupyter Book 1.x (-W -n), executing nothing
#   make gpu-wheels           .whl/: the wheels the lent GPU machine lacks (carry it; see scripts/paper_scale.sh)
#   make book-paper FROM=...  paper-scale run(s) brought back from that machine -> results/ (numbers, and the executed
#                             notebooks in results/executed/), benchmarks/results/, _build/html-paper,
#                             README results table (FROM: tarball(s), parts or folder(s); several: FROM="a b")
#   make paper-cache FROM=... between device calls: the models and training states a run brought back -> .whl/cache/ (carried)
#   make test                 pytest tests/ + nbval on chapters/ (each chapter re-executed, its outputs compared) + the GPU
#                             campaign's CPU dry run (make dry-run-paper) + make book + every page opened in headless
#                             Chromium (scripts/check_book.py; scripts/ensure_chromium.sh installs it)
#   make outputs [CHAPTERS=.] after editing a chapter: re-execute it in place at CI scale (the outputs nbval checks)
#   make results-table        rebuild the results tables (README.md, the book's results.md) from results/*.json
#   make bench                trainer/sampler throughput on this machine
#   make clean                rm -rf _build
# Every tool runs as $(PY) -m ... (jupyter-book: $(VENV)/bin/jupyter-book); nothing relies on an
# activated venv or on PATH.

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := book

SCALE   ?= ci
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.stamp
# jupyter_book 1.x has no __main__ module: run the venv's console script by its path instead.
JB      := $(VENV)/bin/jupyter-book

CHAPTERS    := $(sort $(wildcard chapters/*.ipynb))
EXEC_DIR    := _build/executed/$(SCALE)
EXECUTED    := $(patsubst chapters/%,$(EXEC_DIR)/chapters/%,$(CHAPTERS))
# Paper-scale runs record their figures in results/ (committed, read by the README's results table);
# any other scale writes under _build/ so that tests never touch tracked files.
RESULTS_DIR := $(if $(filter paper,$(SCALE)),$(abspath results),$(abspath _build/results/$(SCALE)))
SRC_DIR     := _build/src/$(SCALE)
JB_OUT      := _build/jb/$(SCALE)
HTML_DIR    := $(if $(filter ci,$(SCALE)),_build/html,_build/html-$(SCALE))
NBVAL_RESULTS := $(abspath _build/nbval-results)

# Pages besides the notebooks: the .md files named in _toc.yml (plus intro.md), and references.bib.
TOC_MD  := $(sort intro.md $(wildcard $(addsuffix .md,$(shell sed -n 's/^[ -]*\(file\|root\): *//p' _toc.yml 2>/dev/null))))
EXTRAS  := $(wildcard references.bib)
# Static assets the pages may reference, and _ext (the book's local Sphinx extension), copied whole if present.
ASSETS  := $(wildcard _static images figures _ext)

# The kernel "python3" must resolve to the venv's kernelspec, even if the user has one in ~/.local.
export JUPYTER_PREFER_ENV_PATH := 1
export PYTHONHASHSEED := 0
# glibc's malloc hands every tensor of 128 KiB or more straight back to the kernel when it is freed, so the next one
# page-faults its memory in again: a width-128 MLP on 10,000 samples spends about a tenth of each reverse step
# doing so (benchmarks/cpu_sampler.py). Kept instead (never trimmed), the same values come out faster. Only where the
# Makefile runs Python (tests, chapters); a value already in the environment wins.
export MALLOC_MMAP_THRESHOLD_ ?= 1073741824
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296
# One on-disk cache (trained models, samples) for nbval and papermill, whatever their working directory:
# the book build after nbval reuses what nbval computed. Keys hash the config and mi_lib's source.
export MI_CACHE_DIR ?= $(abspath .mi_cache)
# How every headless run of a chapter (papermill, nbval, make outputs) is set up: inline figures;
# MI_STATIC_WIDGETS=1: mi.interact draws its default view as plain output (nbclient can deadlock on widget output,
# jupyter/nbclient#312); MI_PROGRESS=0: no progress bars (a stored bar is a frozen '0%' widget in the committed
# notebook). Live kernels (Jupyter, Colab) keep both.
# CPU_NUMERICS, the aim: the same bits on any x86 CPU. Unpinned, torch picks its kernels by the CPU (AVX-512 on one machine,
# AVX2 on another; MKL by vendor), so a chapter's last digits differ between two CI machines of the same kind, and a
# recursion that trains on its own samples turns those bits into other numbers. ATen's vector kernels capped at AVX2,
# oneDNN's (the UNet's convolutions) too, and MKL's conditional numerical reproducibility in its compatible mode
# (the one documented for Intel and AMD alike; the three together are reported to give identical float32 results
# across vendors, pytorch/pytorch#155552, Deep-MI/FastSurfer#892; here they do not quite: see the README's "Both runs pin"); part of
# every cache key (mi_lib.storage.cache.cpu_numerics). Costs about 1.4x on an AVX-512 CPU (UNet training 1.35x, MLP training 1.6x);
# the MLP's sampling multiplies through oneDNN instead of MKL's SSE2 path (mi_lib.diffusion.nets.Linear, benchmarks/cpu_sampler.py).
CPU_NUMERICS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE
HEADLESS := MPLBACKEND=module://matplotlib_inline.backend_inline MI_STATIC_WIDGETS=1 MI_PROGRESS=0 $(CPU_NUMERICS)

.PHONY: venv executed book book-executed render gpu-wheels book-paper paper-cache test test-unit test-nbval dry-run-paper outputs results-table bench clean FORCE

# ---------------------------------------------------------------- environment
venv: $(STAMP)

# mi_lib/__init__.py: the editable install maps only packages that existed when it ran.
$(STAMP): requirements.txt pyproject.toml $(wildcard mi_lib/__init__.py mi_lib/*/__init__.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mode-interpolation)"
	@$(PY) -c 'import importlib.metadata as m; v = m.version("jupyter-book"); assert v.split(".")[0] == "1", "jupyter-book " + v + " is not 1.x"; print("jupyter-book", v)'
	touch $@

# ---------------------------------------------------------------- execution
executed: $(EXECUTED)

# Always re-executed (FORCE): a chapter depends on mi_lib, data and caches, not just on itself.
# papermill exits non-zero on any cell error, which fails make.
$(EXEC_DIR)/chapters/%.ipynb: chapters/%.ipynb $(STAMP) FORCE
	@mkdir -p $(@D) $(RESULTS_DIR)
	@echo "papermill $< (scale=$(SCALE))"
	MI_RESULTS_DIR=$(RESULTS_DIR) $(HEADLESS) \
	  $(PY) -m papermill $< $@ -p scale $(SCALE) -k python3 --cwd chapters --no-progress-bar

# ---------------------------------------------------------------- book
# Per chapter, the paper-scale notebook the GPU campaign landed where its code cells are the chapter's, else the committed
# outputs (CI scale; nbval in make test re-executes every chapter and fails on one that differs), each under a banner
# (scripts/book_sources.py); SCALE=paper: the landed notebooks only. Nothing is executed.
BOOK_SOURCES := $(if $(filter paper,$(SCALE)),$(patsubst chapters/%,results/executed/%,$(CHAPTERS)),$(CHAPTERS))
book: $(STAMP)
	$(if $(filter ci paper,$(SCALE)),,$(error make book renders SCALE=ci or SCALE=paper; make book-executed SCALE=$(SCALE) runs the chapters))
	rm -rf $(EXEC_DIR)/chapters && mkdir -p $(EXEC_DIR)/chapters
	$(if $(filter paper,$(SCALE)),cp $(BOOK_SOURCES) $(EXEC_DIR)/chapters/,$(PY) scripts/book_sources.py $(EXEC_DIR)/chapters $(CHAPTERS))
	@$(MAKE) --no-print-directory render SCALE=$(SCALE)

book-executed: executed
	@$(MAKE) --no-print-directory render SCALE=$(SCALE)

# The one render recipe: whatever lies in $(EXEC_DIR)/chapters/ (make executed, or make book-paper).
render: $(STAMP)
	rm -rf $(SRC_DIR)
	mkdir -p $(SRC_DIR)/chapters
	cp _config.yml _toc.yml $(SRC_DIR)/
	cp --parents $(TOC_MD) $(EXTRAS) $(SRC_DIR)/
	$(if $(ASSETS),cp -r $(ASSETS) $(SRC_DIR)/)
	cp $(EXECUTED) $(SRC_DIR)/chapters/
	$(PY) scripts/strip_widget_state.py --book $(SRC_DIR)/chapters/*.ipynb  # no orphaned widget state, no injected-parameters cell
	$(JB) build $(SRC_DIR) --path-output $(JB_OUT) --builder html -W -n --keep-going
	rm -rf $(HTML_DIR)
	cp -r $(JB_OUT)/_build/html $(HTML_DIR)
	@echo "Book: $(abspath $(HTML_DIR))/index.html"

# ---------------------------------------------------------------- paper scale on the lent GPU machine
# That machine has torch but no jupyter stack and no package index. Here: make gpu-wheels (-> .whl/, and
# .whl/COMMIT for the results' provenance). There, with .whl carried: bash scripts/paper_scale.sh --window N
# (or CHAPTER...; a tarball, or its parts, comes back). Here again: make book-paper FROM=<tarball, part or folder>
# [FROM="a b" for several].
gpu-wheels: $(STAMP)
	$(PY) scripts/gpu_wheels.py --dest .whl

FROM ?=
book-paper: $(STAMP)
	$(if $(strip $(FROM)),,$(error book-paper needs FROM=<tarball(s) or folder(s) from scripts/paper_scale.sh>))
	$(PY) scripts/paper_unpack.py $(FROM) --results $(abspath results) --executed results/executed --cache .whl/cache
	mkdir -p _build/executed/paper/chapters && cp results/executed/*.ipynb _build/executed/paper/chapters/
	$(PY) scripts/results_table.py --write README.md results.md
	@$(MAKE) --no-print-directory render SCALE=paper

# Between device calls: the trained models and training states a run brought back -> .whl/cache/, carried next time.
paper-cache: $(STAMP)
	$(if $(strip $(FROM)),,$(error paper-cache needs FROM=<tarball(s) or folder(s) from scripts/paper_scale.sh>))
	$(PY) scripts/paper_unpack.py $(FROM) --cache-only --cache .whl/cache

# ---------------------------------------------------------------- tests
test: test-unit test-nbval dry-run-paper
	$(MAKE) book SCALE=ci
	CHROMIUM=$$(bash scripts/ensure_chromium.sh) $(PY) scripts/check_book.py _build/html --screenshots _build/screenshots  # every page in headless Chromium

# The unit tests and the dry run: pytest-xdist, one worker per core, one thread each (their tensors are small: two
# workers of one thread get through them in about 0.6x the time one process of two threads takes, README durations);
# WORKERS=0: one process. nbval runs alone: a chapter's printed digits depend on the thread count.
WORKERS ?= auto
ONE_THREAD := $(if $(filter 0,$(WORKERS)),,OMP_NUM_THREADS=1)
XDIST      := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS))

test-unit: $(STAMP)
	MPLBACKEND=Agg $(ONE_THREAD) $(PY) -m pytest tests/ -p no:cacheprovider -m "not paper_dry_run" $(XDIST) --durations=10

# Every chapter with a paper scale executed at scale "paper" with tiny trainings, UNets and sample counts
# (tests/test_paper_dry_run.py; about 5 minutes on 2 cores for all): the paper-scale code paths, which nbval never
# reaches, run through on a CPU at every make test, so no GPU window meets a broken one. One window's chapters:
# make dry-run-paper K="02 or 03 or 04". CPU_NUMERICS: the same kernels on every CPU, as for nbval.
dry-run-paper: $(STAMP)
	MPLBACKEND=Agg $(CPU_NUMERICS) $(ONE_THREAD) $(PY) -m pytest tests/test_paper_dry_run.py -p no:cacheprovider -m paper_dry_run $(XDIST) --durations=0 $(if $(K),-k "$(K)")

# Re-runs chapters/*.ipynb and compares against their committed outputs (text only; images skipped).
test-nbval: $(STAMP)
	rm -rf $(NBVAL_RESULTS) && mkdir -p $(NBVAL_RESULTS)
	MI_RESULTS_DIR=$(NBVAL_RESULTS) $(HEADLESS) \
	  $(PY) -m pytest --nbval $(CHAPTERS) --nbval-current-env \
	    --nbval-sanitize-with nbval_sanitize.cfg --nbval-cell-timeout 1800 \
	    -p no:cacheprovider --ignore=_build --ignore=.venv --durations=15

# The committed CI-scale outputs, which nbval compares against, refreshed after a chapter is edited: each chapter is
# executed in nbval's environment into _build/outputs/ and copied over the committed one only if it ran through
# (a failed run stays in _build/outputs/ to read), without the orphaned widget state papermill stores.
# One chapter: make outputs CHAPTERS=chapters/06_detection.ipynb. Review with git diff, then run make test.
outputs: $(STAMP)
	@mkdir -p _build/outputs
	@for nb in $(CHAPTERS); do \
	  echo "papermill $$nb (scale=ci, in place)"; \
	  MI_RESULTS_DIR=$(abspath results) $(HEADLESS) \
	    $(PY) -m papermill $$nb _build/outputs/$$(basename $$nb) -k python3 --cwd chapters --no-progress-bar \
	    || { echo "$$nb failed: its run is in _build/outputs/, the committed notebook is unchanged"; exit 1; }; \
	  $(PY) scripts/strip_widget_state.py _build/outputs/$$(basename $$nb) && cp _build/outputs/$$(basename $$nb) $$nb || exit 1; \
	done

# The results tables of README.md and the book's results.md, rebuilt from results/*.json (tests fail if either is out of date).
results-table: $(STAMP)
	$(PY) scripts/results_table.py --write README.md results.md

# Throughput of the trainer and sampler on this machine (prints figures; asserts nothing).
bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf _build

FORCE:

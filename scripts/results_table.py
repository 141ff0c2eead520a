"""Rebuild the results and performance tables of the README and of the book's results page from the committed JSON files.

    python scripts/results_table.py                               # print both tables
    python scripts/results_table.py --write README.md results.md  # replace the marked sections of these files
    python scripts/results_table.py --check README.md results.md  # exit 1 if one of them is out of date

Results come from ``results/<chapter>.json`` (written by each chapter; the ``paper`` entry is ours at paper
scale, from the GPU campaign, the ``ci`` entry ours at CI scale, from ``make outputs``), performance from ``benchmarks/results/<device>.json`` (written by ``benchmarks/bench.py --json``).
What the paper or the official code reports is listed below, with its source, never computed here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"  # the chapters' titles (tests point ROOT, where results/ lies, elsewhere)
sys.path.insert(0, str(ROOT))
from mi_lib.storage.results import format_number  # noqa: E402

MNIST = {"digits_data": "mnist"}  # chapter 7's digits rows are labelled for the MNIST run (paper scale's default)

# chapter -> [(key in results JSON, what it measures, the paper's figure or "—" if the paper has none)], and
# optionally a 4th element: run parameters the row's label assumes (a run with others shows them instead)
CLAIMS: dict[str, list[tuple[str, str, str] | tuple[str, str, str, dict[str, object]]]] = {
    "01_forward_process": [
        ("max_abs_z_moments", "closed-form q_t vs simulation: largest z-score of mean and variance", "— (implicit)"),
        ("max_rel_score_error", "closed-form score vs autograd: max relative error", "—"),
        ("pure_noise_share_official_1d", "official schedule: share of steps at pure noise (TV<0.01), 1D", "— (not measured)"),
        ("pure_noise_share_official_grid", "official schedule: share of steps at pure noise, 2D grid", "— (not measured)"),
        ("pure_noise_share_standard_grid", "standard 1e-4→0.02: share of steps at pure noise, 2D grid", "—"),
    ],
    "02_mode_interpolation_1d": [
        ("min_excess_largest_N", "1D, largest N: generated / true mass in the worst gap (k = 4)", "— (Fig. 2: visible mass between modes)"),
        ("gap_mass_1-2_N500000", "1D, N = 500k: share of samples in the gap 1–2", "— (read off Fig. 2 only)"),
        ("moved_wide_over_narrow", "modes 1, 2, 4: mass in gap 2–4 / mass in gap 1–2", "— (Fig. 2: 'much smaller')"),
        ("moved_mass_ratio_high", "… its upper 95% bound (a symmetric blur: about 1; asserted < 1 at paper scale)", "—"),
        ("moved_density_ratio", "modes 1, 2, 4: density per unit length, gap 2–4 / gap 1–2 (an even smear: 1)", "—"),
        ("moved_density_ratio_high", "… its upper 95% bound (asserted < 1)", "—"),
        ("tails_inner", "1D, largest N: end modes' samples 4–6σ out on the side facing a neighbour", "—"),
        ("tails_outer", "… on the side facing away (a symmetric blur: as many)", "—"),
        ("moved_tail_near", "modes 1, 2, 4: mode 2's samples 4–6σ out facing its nearer neighbour", "—"),
        ("moved_tail_far", "… facing its farther neighbour (asserted fewer at paper scale)", "—"),
    ],
    "03_mode_interpolation_2d": [
        ("grid_out_of_support", "2D grid: share of samples out of support (k = 4)", "— (Fig. 3, not counted)"),
        ("grid_nearest_neighbour", "2D grid: samples between two modes that lie between nearest neighbours", "— ('between nearest modes')"),
        ("diamond_nearest_neighbour", "diamond: samples between two modes that lie between nearest neighbours", "—"),
        ("grid_density_ratio_nearest_vs_second", "2D grid: samples per unit tube length, nearest-neighbour / second-nearest segments (an even spread: 1)", "—"),
        ("grid_null_density_ratio_nearest_vs_second", "2D grid: the same ratio after turning each sample about its nearest mode (an isotropic blur: the null)", "—"),
        ("diamond_density_ratio_nearest_vs_second", "diamond: the same density ratio", "—"),
        ("diamond_null_density_ratio_nearest_vs_second", "diamond: the same ratio for its isotropic blur", "—"),
        ("grid_aligned_share", "2D grid: samples 10–20σ from their mode within 22.5° of a nearest-neighbour direction", "—"),
        ("grid_aligned_share_isotropic", "2D grid: … the share an isotropic spread gives", "—"),
        ("diamond_aligned_share", "diamond: the same share towards nearest neighbours", "—"),
        ("diamond_aligned_share_isotropic", "diamond: … the share an isotropic spread gives", "—"),
        ("diamond_horizontal_non_neighbour_mass", "diamond: share of samples on horizontal (non-neighbour) segments", "— ('no interpolation along x')"),
        ("diamond_density_ratio_horizontal_vs_nearest", "diamond: samples per unit tube length, horizontal / nearest-neighbour segments", "— ('no interpolation along x')"),
        ("diamond_null_density_ratio_horizontal_vs_nearest", "diamond: the same ratio for its isotropic blur", "—"),
    ],
    "04_score_smoothness": [
        ("exact_gap_mass", "1D: gap mass sampling with the exact score (true: 4.2e-5)", "— (not run in the paper)"),
        ("learned_gap_mass", "1D: gap mass sampling with the learned score", "—"),
        ("effective_smoothing_width", "width h* of the smoothed exact score that matches the learned gap mass", "—"),
        ("learned_midpoint_share", "learned score: share of its gap samples within 0.15 of a gap's midpoint (an even spread: 0.5)", "—"),
        ("matched_midpoint_share", "exact score smoothed by h*: the same share", "—"),
        ("learned_mode_spread", "learned score: spread of the modes (true sigma 0.05)", "—"),
        ("matched_mode_spread", "exact score smoothed by h*: spread of the modes", "—"),
        ("score_fit_width_t0", "width h whose smoothed exact score lies closest to the learned score in the gaps at t = 0 (read from the score, not the samples)", "—"),
        ("slope_ratio_true_over_learned_t0", "largest slope between modes at t = 0: true / learned", "— (Fig. 4, qualitative)"),
    ],
    "05_shapes_hands": [
        ("shapes_repeated", "Simple Shapes: generated images with two shape-sized blobs in one column (training data: 0)", "— (Fig. 1, examples only)"),
        ("shapes_repeated_same_kind", "Simple Shapes: ... of which the two blobs are the same shape (a repeated shape)", "— (Fig. 1, examples only)"),
        ("shapes_overpopulated", "Simple Shapes: generated images with more shape-sized blobs than columns (training data: 0)", "—"),
        ("shapes_repeated_among_few_blobs", "Simple Shapes: crowded column among images with at most three blobs (over-population set aside)", "—"),
        ("shapes_hallucination_rate", "Simple Shapes: generated images the strict stencil counter does not call valid", "— (not counted)"),
        ("hands_hallucination_rate", "synthetic hands: generated hands whose finger count is not 5 (training data: 0)", "— (Fig. 5, 11k Hands, examples only)"),
    ],
    "06_detection": [
        ("hallucinated_1d", "1D, official schedule: share of samples out of support (k = 4)", "—"),
        ("hallucinated_1d_standard", "1D, standard schedule, same data and training: the same share", "— (not compared)"),
        ("auroc_hal_1d", "1D: AUROC of Hal (t = 0..9) against out-of-support labels (k = 4)", "— (Fig. 7, histograms only)"),
        ("removed_1d", "1D: hallucinations removed, threshold keeping 96% on a calibration batch", "> 95%"),
        ("kept_1d", "1D: in-support test samples kept at that threshold", "96%"),
        ("auroc_hal_grid", "2D grid: AUROC of Hal", "—"),
        ("removed_grid", "2D grid: hallucinations removed at the calibrated threshold", "> 95%"),
        ("kept_grid", "2D grid: in-support kept at that threshold", "96%"),
        ("auroc_eps_norm_grid", "2D grid: AUROC of the baseline ‖eps_hat‖ at t = 0", "— (not compared)"),
        ("auroc_hal_shapes", "Simple Shapes: AUROC of Hal against crowded-column labels (chapter 5's counter)", "—"),
        ("auroc_hal_shapes_matched_window", "Simple Shapes: AUROC of Hal over the window matched to t = 0..9 in alpha_bar (no labels used)", "—"),
        ("auroc_eps_norm_shapes", "Simple Shapes: AUROC of the baseline ‖eps_hat‖ at t = 0", "— (not compared)"),
        ("removed_shapes", "Simple Shapes: crowded-column images removed, threshold keeping 96% on a calibration half", "> 95%"),
        ("kept_shapes", "Simple Shapes: other images kept at that threshold", "96%"),
        ("auroc_hal_hands", "synthetic hands: AUROC of Hal against finger count ≠ 5", "—"),
        ("auroc_hal_hands_matched_window", "synthetic hands: AUROC of Hal over the window matched in alpha_bar", "—"),
        ("auroc_eps_norm_hands", "synthetic hands: AUROC of the baseline ‖eps_hat‖ at t = 0", "— (not compared)"),
        ("removed_hands", "synthetic hands: non-five hands removed at the calibrated threshold", "> 95%"),
        ("kept_hands", "synthetic hands: five-finger hands kept at that threshold", "96%"),
    ],
    "07_recursive_training": [
        ("hallucination_none_last", "2D grid, last generation, no filter: share of samples out of support (k = 4)",
         "— (Fig. 8, qualitative; 5 generations, 100k kept of 102.5k)"),
        ("hallucination_random_last", "same, random filter (the kept samples drawn at random from the candidates)", "— (Fig. 8)"),
        ("hallucination_hal_last", "same, Hal filter (the candidates with the lowest Hal kept)", "— (Fig. 8: filtering slows the drift)"),
        ("compounding_none", "no filter: last generation's share minus generation 0's (hallucinations compound if > 0)", "— (Fig. 8: the samples drift)"),
        ("tv_none_last", "last generation, no filter: total variation of the 26-cell masses to the truth", "— (not measured)"),
        ("tv_hal_last", "last generation, Hal filter: the same total variation", "— (not measured)"),
    ],
    "07b_recursive_digits": [
        ("digits_fid_floor", "real MNIST digits (28×28): FID-like score of 5,000 real training digits vs the 1,500 held out (the floor)", "—", MNIST),
        ("digits_fid_g0", "MNIST through a UNet, generation 0: FID-like score (conv-classifier features)", "— (MNIST FID, Fig. 8)", MNIST),
        ("digits_fid_none_last", "MNIST, last generation, no filter: FID-like score (mean over seeds)", "— (MNIST: FID rises)", MNIST),
        ("digits_fid_none_rise", "MNIST, no filter: last generation's score minus generation 0's (the digits drift if > 0)", "— (MNIST: FID rises)", MNIST),
        ("digits_fid_random_last", "same, random filter", "—", MNIST),
        ("digits_fid_hal_last", "same, Hal filter", "— (MNIST: lower with the Hal filter)", MNIST),
        ("digits_fid_real_last", "same, control: each generation fine-tuned on real digits instead of samples", "—", MNIST),
    ],
    "07c_recursive_shapes": [
        ("shapes_crowded_g0", "Simple Shapes, generation 0: images with a crowded column (chapter 5's model)", "— (Fig. 8, shapes)"),
        ("shapes_crowded_none_last", "Simple Shapes, last generation, no filter: images with a crowded column", "— (Fig. 8: rises)"),
        ("shapes_crowded_random_last", "same, random filter", "—"),
        ("shapes_crowded_hal_last", "same, Hal filter", "— (Fig. 8: lower with the Hal filter)"),
    ],
    "08_mitigations": [
        ("grid_ddpm", "2D grid, DDPM (1000 steps): share of samples out of support (k = 4)", "— (not in the paper)"),
        ("grid_ddim25", "same, deterministic DDIM, 25 steps (asserted above DDPM's)", "— (Ashiq et al. 2026: DDIM > DDPM)"),
        ("grid_ddim100", "same, deterministic DDIM, 100 steps", "—"),
        ("grid_ddim_all", "same, deterministic DDIM to every step from pure noise (asserted not above DDPM's)", "— (Ashiq et al.: DDIM > DDPM)"),
        ("grid_ddim100_last5", "same, 100 DDIM steps with eta = 1 in the last 5 (asserted below 100 deterministic steps)", "— (Ashiq et al.: a few stochastic steps fix it)"),
        ("grid_sharpening_0.003", "same, DDPM with Laplacian score sharpening, strength 0.003", "— (Chandran et al. 2025: fewer)"),
        ("grid_ddpm_small_variance", "same, DDPM with sigma^2 = beta tilde (asserted below sigma^2 = beta)", "—"),
        ("grid_hal_auroc_ddpm", "Hal's AUROC under DDPM", "—"),
        ("grid_hal_auroc_ddim_all", "Hal's AUROC under DDIM to every step", "—"),
        ("1d_base", "1D (1, 2, 3), CI model: share of samples out of support", "—"),
        ("1d_4x_steps", "same, four times the training steps (asserted below the CI model's)", "—"),
        ("1d_untied", "same, the untied network (3x parameters)", "—"),
        ("1d_2k_points", "same, 2,000 training points instead of 20,000", "—"),
        ("1d_ddim_all", "same, deterministic DDIM to every step (asserted above DDPM's)", "— (Ashiq et al.: DDIM > DDPM)"),
        ("1d_ddim100_last5", "same, 100 DDIM steps with eta = 1 in the last 5 (asserted below 100 deterministic steps)", "— (Ashiq et al.: a few stochastic steps fix it)"),
        ("1d_vsm_rho0", "same, learned variance (Improved DDPM's hybrid loss), VSM rho = 0", "—"),
        ("1d_vsm_rho0.1", "same, VSM rho = 0.1 (asserted not below rho = 0, nor any other weight)", "up to ~25% fewer (VSM, image scale, rho = 0.1)"),
        ("1d_vsm_rho0_seed1235", "same, rho = 0 from another training seed (the yardstick between recipes)", "—"),
    ],
}

#: chapter -> the sizes its run's parameters give its rows' labels, shown after each column's run (a row says "the last
#: generation"; this line says how many generations that was, and how many samples each kept).
RUN_SIZES = {
    "07_recursive_training": lambda p: f"{p['generations']} generations, {p['n_keep']:,} of {p['n_candidates']:,} candidates kept",
    "07b_recursive_digits": lambda p: (f"{p['digits_generations']} generations, {p['n_keep']:,} of {p['n_candidates']:,} candidates "
                                       f"kept, seed{'s' * (len(p['digits_seeds']) > 1)} {', '.join(map(str, p['digits_seeds']))}"),
    "07c_recursive_shapes": lambda p: (f"{p['shapes_generations']} generations, {p['shapes_n_keep']:,} of {p['n_candidates']:,} "
                                       f"images kept, later generations fine-tuned {p['train_steps']:,} steps"),
}

#: Rows measured at paper scale only: the CI-scale run of the chapter does not compute them (tests/test_repo.py fails
#: on a row that is missing from a chapter's CI entry without being listed here).
PAPER_SCALE_ONLY: dict[str, set[str]] = {
    "02_mode_interpolation_1d": {"gap_mass_1-2_N500000"},  # the CI run trains N = 2k and 20k only
}

# benchmark key -> (what, the official code's figure on one H100 from shared/REFERENCE.md, unit)
PERF: dict[str, tuple[str, float | None, str]] = {
    "train_steps_per_s_tied": ("training, official MLP, batch 10k", 235.0, "steps/s"),
    "sample_1d_s_per_million": ("1D ancestral sampling, 1M samples × 1000 steps", 25.7, "s"),
    "sample_2d_s_per_million": ("2D ancestral sampling, 1M samples × 1000 steps", 26.0, "s"),
    "sample_2d_hal_s_per_million": ("2D sampling + streaming Hal (last 10 steps), 1M samples", None, "s"),
}

MARKERS = {
    "results": ("<!-- results-table:start -->", "<!-- results-table:end -->"),
    "performance": ("<!-- performance-table:start -->", "<!-- performance-table:end -->"),
    "durations": ("<!-- durations:start -->", "<!-- durations:end -->"),
}
#: Sections a file may leave out (the book's results page has no durations).
OPTIONAL = {"durations"}


def durations_text() -> str:
    """The README's durations of its two commands, from benchmarks/durations.json (written by
    scripts/clean_clone_timings.sh): measured, never typed."""
    path = ROOT / "benchmarks" / "durations.json"
    entries = json.loads(path.read_text())["durations"] if path.exists() else {}
    if not entries:
        return "Not measured yet: `bash scripts/clean_clone_timings.sh` (then `make results-table`)."
    lines = []
    for command in sorted(entries):
        e = entries[command]
        minutes, seconds = divmod(int(e["seconds"]), 60)
        lines.append(f"- `{command}`: {minutes} min {seconds:02d} s from a clean clone of `{e['commit']}` "
                     f"(virtualenv included, packages from that machine's pip cache; {e['machine']}, {e['date']})")
    return "\n".join(lines) + "\n\nMeasured by `bash scripts/clean_clone_timings.sh` (then `make results-table`)."


def _provenance(entry: dict, chapter: str) -> str:
    fast = "; ".join(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) for kind, opts in sorted(entry.get("fast", {}).items()))
    try:
        sizes = f"; {RUN_SIZES[chapter](entry['params'])}" if chapter in RUN_SIZES else ""
    except KeyError:  # a run from before the chapter recorded these parameters
        sizes = "; sizes not recorded"
    return f"{entry['device']}{f' ({fast})' if fast else ''}, {entry['wall_time_s']:.0f} s, `{entry['commit']}`{sizes}"


def chapter_title(chapter: str) -> str:
    """The chapter's number and the title of its notebook (its first heading), e.g. "2. Mode interpolation in 1D"."""
    nb = json.loads((CHAPTERS / f"{chapter}.ipynb").read_text())
    heading = next(line for cell in nb["cells"] if cell["cell_type"] == "markdown"
                   for line in "".join(cell["source"]).splitlines() if line.startswith("# "))
    return f"{chapter.split('_')[0].lstrip('0')}. {heading[2:].strip()}"


def chapter_table(chapter: str) -> str:
    """One chapter's claims: a heading that links the chapter, one line naming the runs behind its two columns
    (device, wall time, commit; a paper-scale run that stopped on a claim says so there), and one row per claim
    with the paper's figure, ours at paper scale (where the GPU campaign has run it) and ours at CI scale (the
    committed chapter's run, written by `make outputs`; tests/test_repo.py checks these numbers against the ones
    the committed notebook prints, which nbval checks against a fresh run)."""
    path = ROOT / "results" / f"{chapter}.json"
    entries = json.loads(path.read_text()) if path.exists() else {}
    entry, ci = entries.get("paper"), entries.get("ci")
    if entry is None:
        paper_run = "not yet run"
    else:
        paper_run = _provenance(entry, chapter)
        if entry.get("claim_failed"):  # the run stopped on an assertion after writing these numbers (paper_unpack.py)
            paper_run += "; **claim failed**: " + " ".join(str(entry["claim_failed"]).split())
    lines = [f"### [{chapter_title(chapter)}](chapters/{chapter}.ipynb)", "",
             f"Paper scale: {paper_run}. CI scale: {_provenance(ci, chapter) if ci else 'not yet run (`make outputs`)'}.", "",
             "| claim | paper | ours, paper scale | ours, CI scale |", "|---|---|---|---|"]
    for key, what, paper, *requires in CLAIMS[chapter]:
        wanted = requires[0] if requires else {}
        if entry is None:
            ours = "not yet run"
        else:
            ran = {k: entry.get("params", {}).get(k) for k in wanted}
            if ran != wanted:  # e.g. chapter 7 run on 8x8 digits: its numbers are not what the label says
                ours = "not run with " + ", ".join(f"{k}={v}" for k, v in wanted.items()) + " (ran " + ", ".join(f"{k}={v}" for k, v in ran.items()) + ")"
            elif key not in entry["numbers"]:  # e.g. chapter 6's image rows, left out of GPU window 2 (n_images=0)
                ours = "not in this run (its parameters left it out)"
            else:
                ours = format_number(entry["numbers"][key])
        if ci is None:
            at_ci = "not yet run"
        elif key not in ci["numbers"]:
            at_ci = "— (paper scale only)" if key in PAPER_SCALE_ONLY.get(chapter, set()) else "not measured (`make outputs`)"
        else:
            ran = {k: ci.get("params", {}).get(k) for k in wanted}
            at_ci = format_number(ci["numbers"][key]) + ("" if ran == wanted else " (" + ", ".join(f"{k}={v}" for k, v in ran.items()) + ")")
        lines.append(f"| {what} | {paper} | {ours} | {at_ci} |")
    return "\n".join(lines)


def results_table() -> str:
    """Every chapter's :func:`chapter_table`, in the book's order."""
    return "\n\n".join(chapter_table(chapter) for chapter in CLAIMS)


def performance_table() -> str:
    """One row per figure of each benchmarks/results/*.json. A file from today's bench.py carries its rows, each with the
    official code's figure it was compared with (measured in the same run with --official, else the H100 figure of
    shared/REFERENCE.md, as the file's info says); an older file gives the four figures of PERF."""
    runs = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    lines = [
        "| device | work | ours | official code | ratio to official |",
        "|---|---|---|---|---|",
    ]
    for path in runs:
        data = json.loads(path.read_text())
        info, figures = data["info"], data["figures"]
        device = f"{info['device']} (torch {info['torch']}{', --short' if info.get('short') else ''})"
        if "rows" in data:
            where = info.get("official", {}).get("where", "H100, shared/REFERENCE.md")
            same_run = "measured in this run" in where
            for row in data["rows"]:
                off = "—" if row["official"] is None else f"{_perf_number(row['official'])} {row['unit']}" + ("" if same_run else " (H100)")
                ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
                peak = "" if row.get("peak_gib") is None else f", peak {row['peak_gib']:.2f} GiB"
                lines.append(f"| {device} | {row['label']} | {_perf_number(row['value'])} {row['unit']}{peak} | {off} | {ratio} |")
            continue
        for key, (what, official, unit) in PERF.items():
            ours = figures[key]
            if official is None:
                ratio = "—"
            elif unit == "s":
                ratio = f"{official / ours:.2f}×"
            else:
                ratio = f"{ours / official:.2f}×"
            off = "—" if official is None else f"{official:g} {unit} (H100)"
            lines.append(f"| {device} | {what} | {ours:,.1f} {unit} | {off} | {ratio} |")
    return "\n".join(lines)


def _perf_number(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def render(readme: str, name: str = "README") -> str:
    for section, table in (("results", results_table()), ("performance", performance_table()),
                           ("durations", durations_text())):
        start, end = MARKERS[section]
        if section in OPTIONAL and start not in readme and end not in readme:
            continue
        if start not in readme or end not in readme:
            raise SystemExit(f"{name} lacks the markers {start} ... {end}")
        head, rest = readme.split(start, 1)
        _, tail = rest.split(end, 1)
        readme = f"{head}{start}\n{table}\n{end}{tail}"
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", nargs="+", help="rewrite the marked sections of these files (README.md results.md)")
    group.add_argument("--check", metavar="FILE", nargs="+", help="exit 1 if one of these files' tables is out of date")
    args = parser.parse_args()
    for name in args.write or []:
        path = Path(name)
        path.write_text(render(path.read_text(), name))
    stale = [name for name in args.check or [] if render(Path(name).read_text(), name) != Path(name).read_text()]
    if stale:
        raise SystemExit(f"{', '.join(stale)}: tables out of date: run `make results-table`")
    if not args.write and not args.check:
        print(results_table(), performance_table(), sep="\n\n")


if __name__ == "__main__":
    main()

"""Train the CI-scale models (mixtures and images) with mi_lib and ship them in data/checkpoints with a manifest;
adopt the paper-scale models a GPU window trained.

    python scripts/make_checkpoints.py              # (re)train every checkpoint in CI_SPECS
    python scripts/make_checkpoints.py 1d-123-n2k   # only these
    python scripts/make_checkpoints.py --list       # names, spec keys and whether each is shipped
    python scripts/make_checkpoints.py --stats-only # keep the weights, re-record the sample statistics of every shipped model
                                                    # (after a deliberate change to the sampler)
    python scripts/make_checkpoints.py --adopt FROM # ship the models of PAPER_SPECS that a GPU window brought
                                                    # back (FROM: its tarball, or an unpacked paper-scale/ folder)

Paper-scale models (PAPER_SPECS: the official training, 20k-100k steps at batch 10k) are trained on the lent GPU
by the chapters themselves (scripts/paper_scale.sh); --adopt takes them from what a window brought back, records
where, when and by which commit they were trained (run.txt), their first losses, and the statistics of the fixed
batch of samples drawn here, on the CPU, from the shipped weights. Their first losses were drawn by the GPU's
generator (CUDA's random streams are not the CPU's), so tests/test_models.py retrains them only on a GPU.

Each manifest entry records the spec (and its key), how the model was made (commit, device, torch, steps,
training wall time), the first losses of training and the statistics of a fixed batch of samples from it.
``tests/test_models.py`` recomputes both, so a shipped file that no longer matches the code fails CI.
The chapters' CI-scale parameters build exactly these specs; change one there and here together.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import mi_lib as mi  # noqa: E402
from mi_lib.storage.cache import canonical  # noqa: E402
from mi_lib.diffusion.models import ImageModelSpec, MixtureModelSpec, train_payload  # noqa: E402
from mi_lib.storage.checkpoints import CHECKPOINT_DIR, load_manifest, spec_key  # noqa: E402
from mi_lib.storage.results import git_commit  # noqa: E402

#: CPU-trainable stand-ins for the official models (20k-100k steps at batch 10k): same network, data,
#: schedule and optimiser, fewer and smaller steps.
CI_TRAIN = mi.TrainConfig(steps=5_000, batch_size=2_000)
#: 25 modes with sigma 0.0177 need far more steps than 3 modes with sigma 0.05 (5,000 leave the samples ~10 sigma wide).
CI_TRAIN_2D = mi.TrainConfig(steps=30_000, batch_size=2_000)
CI_SPECS: dict[str, MixtureModelSpec] = {
    "1d-123-n2k": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=2_000, train=CI_TRAIN),
    "1d-123-n20k": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000, train=CI_TRAIN),
    "1d-124-n20k": MixtureModelSpec("1d", (1.0, 2.0, 4.0), n_train=20_000, train=CI_TRAIN),
    "grid-n20k": MixtureModelSpec("grid", n_train=20_000, model=mi.MLPConfig(data_dim=2), train=CI_TRAIN_2D),
    "diamond-n20k": MixtureModelSpec("diamond", n_train=20_000, model=mi.MLPConfig(data_dim=2), train=CI_TRAIN_2D),
    # chapter 6 compares Hal under the official and the standard (1e-4 -> 0.02) beta schedule
    "1d-123-n20k-standard": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000, train=CI_TRAIN, schedule=mi.STANDARD),
    # chapter 8's training-time baselines beside 1d-123-n20k: four times the steps, and the untied network (3x parameters)
    "1d-123-n20k-20ksteps": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000,
                                             train=mi.TrainConfig(steps=20_000, batch_size=2_000)),
    "1d-123-n20k-untied": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000, model=mi.MLPConfig(tied_blocks=False),
                                           train=CI_TRAIN),
    # chapter 8's VSM sweep: the network with a learned-variance head, trained with Improved DDPM's hybrid loss
    # plus VSM's penalty at weight rho (rho = 0: the learned-variance baseline)
    **{f"1d-123-n20k-vsm-rho{rho:g}": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000,
                                                       model=mi.MLPConfig(learn_sigma=True),
                                                       train=dataclasses.replace(CI_TRAIN, rho=rho))
       for rho in (0.0, 0.1, 1.0, 10.0)},
    # ... and the rho = 0 recipe again from another training seed: how far apart two equal recipes land
    "1d-123-n20k-vsm-rho0-seed1235": MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000,
                                                      model=mi.MLPConfig(learn_sigma=True),
                                                      train=dataclasses.replace(CI_TRAIN, seed=1235)),
}
#: Chapter 5's CPU-trainable image models (mi_lib.diffusion.models.IMAGE_SCALES["ci"]): 6,000 steps at batch 64 with
#: EMA, about 55 minutes on one core.
for _dataset in ("shapes", "hands"):
    CI_SPECS[f"{_dataset}-ci"] = mi.diffusion.models.image_model_spec(_dataset, "ci")
#: Every paper-scale model a chapter uses (tests/test_models.py builds each chapter's paper-scale setup and checks it
#: finds its models here): the GPU windows train them and --adopt ships them. Chapter 2's five (chapter 4's model is
#: its N = 500k one); chapter 3's grid and diamond (the grid is chapters 6 and 8's too); chapter 6's 1D model under
#: both schedules; chapter 5's two UNets; chapter 8's training-time variants of the N = 500k model.
PAPER_1D = MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=500_000, train=mi.TrainConfig())
PAPER_2D = mi.TrainConfig(steps=100_000)
PAPER_SPECS: dict[str, MixtureModelSpec | ImageModelSpec] = {
    **{f"1d-123-n{n // 1000}k-paper": PAPER_1D.replace(n_train=n) for n in (25_000, 50_000, 100_000, 500_000)},
    "1d-124-n500k-paper": PAPER_1D.replace(means=(1.0, 2.0, 4.0)),
    **{f"{layout}-n100k-paper": MixtureModelSpec(layout, n_train=100_000, model=mi.MLPConfig(data_dim=2), train=PAPER_2D)
       for layout in ("grid", "diamond")},
    "1d-123-n20k-paper": PAPER_1D.replace(n_train=20_000),
    "1d-123-n20k-standard-paper": PAPER_1D.replace(n_train=20_000, schedule=mi.STANDARD),
    **{f"{dataset}-paper": mi.diffusion.models.image_model_spec(dataset, "paper") for dataset in ("shapes", "hands")},
    "1d-123-n500k-untied-paper": PAPER_1D.replace(model=mi.MLPConfig(tied_blocks=False)),
    "1d-123-n500k-40ksteps-paper": PAPER_1D.replace(train=mi.TrainConfig(steps=40_000)),
    **{f"1d-123-n500k-vsm-rho{rho:g}-paper": PAPER_1D.replace(model=mi.MLPConfig(learn_sigma=True),
                                                              train=mi.TrainConfig(rho=rho))
       for rho in (0.0, 0.1, 1.0)},
    "1d-123-n500k-vsm-rho0-seed1235-paper": PAPER_1D.replace(model=mi.MLPConfig(learn_sigma=True),
                                                             train=mi.TrainConfig(seed=1235)),
}
ALL_SPECS = {**CI_SPECS, **PAPER_SPECS}
#: The fixed batch whose statistics each manifest entry records (and the tests reproduce).
# 500 samples: enough to check that file, trainer and sampler agree (the figures are compared to the last bits, not as statistics)
STATS_N, STATS_SEED, LOSS_HEAD = 500, 0, 20
#: Image models record a smaller batch (sampling a UNet on the CPU is slow).
IMAGE_STATS_N = 32


def sample_stats(model: torch.nn.Module, spec: MixtureModelSpec | ImageModelSpec) -> dict:
    """Statistics of STATS_N samples drawn with STATS_SEED: per-dimension mean and variance, and the
    out-of-support share (k = 4). For an image model, IMAGE_STATS_N images: the pixel mean and variance and
    the counter's labels (shapes: label counts; hands: the finger-count histogram)."""
    if isinstance(spec, ImageModelSpec):
        x = mi.sample(
            model, mi.NoiseSchedule(spec.schedule), IMAGE_STATS_N, seed=STATS_SEED, progress=False,
            clip_x0=mi.diffusion.models.IMAGE_CLIP_X0, chunk_size=256,
        ).x0.double()
        images = mi.shapes.from_model_range(x)
        if spec.dataset == "shapes":
            labels = mi.shapes.classify_images(images)
            counts = {label: labels.count(label) for label in mi.shapes.LABELS}
        else:
            counts = {str(k): v for k, v in mi.hands.finger_histogram(mi.hands.count_fingers(images)).items()}
        return {"n": IMAGE_STATS_N, "seed": STATS_SEED, "mean": float(x.mean()), "var": float(x.var()), "labels": counts}
    x = mi.sample(model, mi.NoiseSchedule(spec.schedule), STATS_N, seed=STATS_SEED, progress=False).x0.double()
    oos = mi.out_of_support(x, spec.mixture())
    return {"n": STATS_N, "seed": STATS_SEED, "mean": x.mean(0).tolist(), "var": x.var(0).tolist(), "out_of_support": int(oos.sum())}


def make(name: str, spec: MixtureModelSpec) -> dict:
    print(f"{name}: training {spec.train.steps} steps at batch {spec.train.batch_size} on {spec.n_train} points", flush=True)
    payload = train_payload(spec, mi.Settings.from_environment("cpu"))
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINT_DIR / f"{name}.pt"
    torch.save(payload, path)
    model = mi.diffusion.models.initial_model(spec.model, 0)
    model.load_state_dict(payload["state_dict"])
    return {
        "name": name,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "spec_key": spec_key(spec),
        "spec": canonical(spec),
        "commit": git_commit(),
        "device": mi.describe_device("cpu"),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "train_steps": spec.train.steps,
        "train_wall_time_s": round(payload["wall_time_s"], 1),
        "final_loss_mean_last_500": float(payload["losses"][-500:].mean()),
        "loss_head": payload["losses"][:LOSS_HEAD].tolist(),
        "sample_stats": sample_stats(model, spec),
    }


def adopt(sources: list[Path], commit: str | None = None) -> dict[str, dict]:
    """Manifest entries (and files in data/checkpoints) for the PAPER_SPECS models (mixtures and UNets) among the cache entries that
    paper-scale runs brought back (tarballs or unpacked paper-scale/ folders). ``commit``: the code's commit, where
    the run's run.txt names a wrong one (its note says why)."""
    import tarfile
    import tempfile

    by_json = {json.dumps(canonical(spec), sort_keys=True): name for name, spec in PAPER_SPECS.items()}  # what a payload records
    entries: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            run = source
            if source.is_file():
                with tarfile.open(source) as tar:
                    tar.extractall(Path(tmp) / source.name, filter="data")
                run = Path(tmp) / source.name / "paper-scale"
            lines = (run / "run.txt").read_text().splitlines()
            info = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith(("[", "torch ")))
            for entry_file in sorted([*(run / "cache").glob("mixture-model-*.pt"), *(run / "cache").glob("image-model-*.pt")]):
                payload = torch.load(entry_file, map_location="cpu", weights_only=True)["value"]
                name = by_json.get(payload["spec"])
                if name is None:
                    print(f"{entry_file.name}: not a model of PAPER_SPECS, left out")
                    continue
                spec = PAPER_SPECS[name]
                CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
                path = CHECKPOINT_DIR / f"{name}.pt"
                torch.save({k: payload[k] for k in ("spec", "state_dict", "losses", "wall_time_s")}, path)
                model = mi.diffusion.models.initial_model(spec.model, 0)
                model.load_state_dict(payload["state_dict"])
                torch_line = next((line for line in lines if line.startswith("torch ")), "torch ? | cuda: ?")  # "torch 2.11.0+cu130 | cuda: NVIDIA H200 | ..."
                torch_version, device = torch_line.split(" | ")[0].split(" ")[1], torch_line.split("cuda: ")[-1].split(" | ")[0]
                entries[name] = {
                    "name": name, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size,
                    "spec_key": spec_key(spec), "spec": canonical(spec), "commit": commit or info.get("commit", "unknown").split(" ")[0],
                    "device": device, "torch": torch_version, "date": info.get("date", "")[:8], "train_device": "cuda",
                    "trained_by": f"scripts/paper_scale.sh, run {info.get('date', '?')}", "train_steps": spec.train.steps,
                    "train_wall_time_s": round(float(payload["wall_time_s"]), 1),
                    "final_loss_mean_last_500": float(payload["losses"][-500:].mean()),
                    "loss_head": payload["losses"][:LOSS_HEAD].tolist(),
                    "sample_stats": sample_stats(model, spec), "stats_commit": git_commit(),
                }
                print(f"{name}: adopted from {entry_file.name} ({entries[name]['device']}, {entries[name]['train_wall_time_s']} s), "
                      f"stats {entries[name]['sample_stats']}", flush=True)
    return entries


def write_manifest(entries: dict[str, dict]) -> None:
    """Write the manifest, in ALL_SPECS order. Entries made by another run since this one started (two
    checkpoints trained in parallel) are kept."""
    entries = {**{e["name"]: e for e in load_manifest()}, **entries}
    ordered = [entries[n] for n in ALL_SPECS if n in entries]
    (CHECKPOINT_DIR / "manifest.json").write_text(json.dumps({"checkpoints": ordered}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"checkpoints to (re)make; default all of {list(CI_SPECS)}")
    parser.add_argument("--list", action="store_true", help="list the checkpoints and exit")
    parser.add_argument("--stats-only", action="store_true", help="re-record sample statistics of the shipped weights; no training")
    parser.add_argument("--adopt", nargs="+", type=Path, metavar="FROM", help="ship the PAPER_SPECS models these GPU runs brought back")
    parser.add_argument("--commit", default=None, help="with --adopt: the commit the run's code was (when its run.txt is wrong)")
    parser.add_argument("--note", default=None, help="with --adopt: a note recorded in each adopted entry")
    args = parser.parse_args()
    if args.adopt:
        torch.set_num_threads(min(2, torch.get_num_threads()))
        entries = adopt(args.adopt, args.commit)
        for entry in entries.values():
            if args.note:
                entry["note"] = args.note
        write_manifest(entries)
        return
    shipped = {e["name"]: e for e in load_manifest()}
    if args.list:
        for name, spec in ALL_SPECS.items():
            e = shipped.get(name)
            state = "missing" if e is None else ("shipped" if e["spec_key"] == spec_key(spec) else "STALE (spec changed)")
            print(f"{name:16s} {spec_key(spec)}  {state}")
        return
    known = ALL_SPECS if args.stats_only else CI_SPECS  # paper-scale models are adopted, not trained here
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown checkpoint(s) {unknown}; known: {list(known)}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.stats_only:
        for name in args.names or [n for n in ALL_SPECS if n in shipped]:
            entry, spec = shipped[name], ALL_SPECS[name]
            if entry["spec_key"] != spec_key(spec):
                parser.error(f"{name}: the spec changed since it was trained; retrain it instead")
            trained = (mi.image_model if isinstance(spec, ImageModelSpec) else mi.mixture_model)(spec, progress=False)
            entry["sample_stats"] = sample_stats(trained.model, spec)
            entry["stats_commit"] = git_commit()
            print(f"{name}: stats {entry['sample_stats']}", flush=True)
        write_manifest(shipped)
        return
    for name in args.names or list(CI_SPECS):
        entry = make(name, CI_SPECS[name])
        shipped[name] = entry
        write_manifest({name: entry})
        print(f"{name}: {shipped[name]['train_wall_time_s']} s, stats {shipped[name]['sample_stats']}", flush=True)


if __name__ == "__main__":
    main()

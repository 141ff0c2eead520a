"""Trained models: specs, the shipped-or-trained lookup, and the shipped checkpoints' manifest (each
checkpoint must still produce the statistics recorded when it was made)."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import mi_lib as mi
from mi_lib.storage.cache import canonical
from mi_lib.diffusion.models import MixtureModelSpec, mixture_model, mixture_samples
from mi_lib.storage.checkpoints import CHECKPOINT_DIR, load_manifest, spec_key
from mi_lib.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TINY = MixtureModelSpec("1d", n_train=64, model=mi.MLPConfig(width=16, time_dim=16), train=mi.TrainConfig(steps=5, batch_size=32),
                        schedule=mi.ScheduleConfig("linear", 20, 1e-3, 0.2))
QUIET = Settings(progress=False)


def quiet(cache: Path) -> Settings:
    """A CPU run without progress bars whose cache is ``cache``."""
    return Settings(progress=False, cache_dir=cache)


def _make_checkpoints_module():
    spec = importlib.util.spec_from_file_location("make_checkpoints", ROOT / "scripts" / "make_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spec_defaults_are_resolved_and_validated():
    assert MixtureModelSpec("1d") == MixtureModelSpec("1d", (1, 2, 3), sigma=0.05)
    assert spec_key(MixtureModelSpec("1d")) == spec_key(MixtureModelSpec("1d", (1.0, 2.0, 3.0)))
    assert spec_key(MixtureModelSpec("1d")) != spec_key(MixtureModelSpec("1d", n_train=10))
    with pytest.raises(ValueError, match="unknown dataset"):
        MixtureModelSpec("moons")
    with pytest.raises(ValueError, match="'1d' dataset only"):
        MixtureModelSpec("grid", (1, 2), model=mi.MLPConfig(data_dim=2))
    with pytest.raises(ValueError, match="data_dim"):
        MixtureModelSpec("grid")  # a 1D network for 2D data
    with pytest.raises(ValueError, match="n_train"):
        MixtureModelSpec("1d", n_train=0)


def test_training_data_is_seeded():
    a, b = TINY.training_data(), TINY.training_data()
    assert torch.equal(a, b) and a.shape == (64, 1)
    assert not torch.equal(a, TINY.replace(data_seed=1).training_data())


def test_unshipped_spec_is_trained_then_cached(tmp_path, monkeypatch):
    run = quiet(tmp_path)
    first = mixture_model(TINY, run, checkpoints=tmp_path / "none")
    assert first.source == "trained" and len(first.losses) == 5
    monkeypatch.setattr(mi.diffusion.models, "train", lambda *a, **k: pytest.fail("a cached model was retrained"))
    again = mixture_model(TINY, run, checkpoints=tmp_path / "none")
    for p, q in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)
    s1 = mixture_samples(TINY, 50, run, seed=3)
    s2 = mixture_samples(TINY, 50, run, seed=3)
    assert torch.equal(s1.x0, s2.x0) and s1.x0.shape == (50, 1)
    assert not torch.equal(s1.x0, mixture_samples(TINY, 50, run, seed=4).x0)


def test_training_resumes_from_its_partial_file_which_refresh_discards(tmp_path, monkeypatch):
    """mixture_model/image_model train with a resume file beside the cache entry: a leftover file that does
    not belong to this training is an error (never silently used); refresh=True discards it."""
    from mi_lib.storage.cache import partial_path

    run = quiet(tmp_path)
    resume = partial_path("mixture-model", {"spec": TINY, **run.training_key()}, root=tmp_path, code=mi.diffusion.models.CODE)
    resume.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": "another training"}, resume)
    with pytest.raises(ValueError, match="another training"):
        mixture_model(TINY, run, checkpoints=None)
    trained = mixture_model(TINY, run, checkpoints=None, refresh=True)
    assert trained.source == "trained" and not resume.exists()


def test_shipped_checkpoint_is_used_only_for_its_exact_spec(tmp_path, monkeypatch):
    run = quiet(tmp_path / "cache")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    payload = mi.diffusion.models.train_payload(TINY, QUIET)
    torch.save(payload, folder / "tiny.pt")
    entry = {"name": "tiny", "file": "tiny.pt", "spec_key": spec_key(TINY), "sha256": hashlib.sha256((folder / "tiny.pt").read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": [entry]}))
    assert mixture_model(TINY, run, checkpoints=folder).source == "shipped"
    assert mixture_model(TINY.replace(data_seed=5), run, checkpoints=folder).source == "trained"
    (folder / "tiny.pt").write_bytes((folder / "tiny.pt").read_bytes() + b"x")  # a corrupted file is an error
    with pytest.raises(RuntimeError, match="sha256"):
        mixture_model(TINY, run, checkpoints=folder)


def test_installed_without_data_the_shipped_checkpoints_are_fetched_and_checked(tmp_path, monkeypatch):
    """Colab: mi_lib pip-installed from git has no data/checkpoints, so a chapter fetches the shipped file it needs
    from CHECKPOINT_URL (here a file:// copy of the repository's folder: urllib's real path, no network), checks it
    against the fetched manifest and keeps it in the cache. A mismatched file is an error; an unreachable server
    a warning, and the model is trained as without shipped files."""
    server, missing = tmp_path / "server", tmp_path / "site-packages" / "data" / "checkpoints"
    server.mkdir()
    payload = mi.diffusion.models.train_payload(TINY, QUIET)
    torch.save(payload, server / "tiny.pt")
    entry = {"name": "tiny", "file": "tiny.pt", "spec_key": spec_key(TINY), "sha256": hashlib.sha256((server / "tiny.pt").read_bytes()).hexdigest()}
    (server / "manifest.json").write_text(json.dumps({"checkpoints": [entry]}))
    run = quiet(tmp_path / "cache")
    monkeypatch.setattr(mi.storage.checkpoints, "CHECKPOINT_DIR", missing)
    monkeypatch.setattr(mi.storage.checkpoints, "CHECKPOINT_URL", server.as_uri() + "/")
    monkeypatch.setattr(mi.storage.checkpoints, "_fetched_manifest", set())
    model = mixture_model(TINY, run, checkpoints=missing)
    assert model.source == "shipped" and (tmp_path / "cache" / "checkpoints" / "tiny.pt").read_bytes() == (server / "tiny.pt").read_bytes()
    assert all(torch.equal(a, b) for a, b in zip(model.model.state_dict().values(), payload["state_dict"].values()))
    assert mixture_model(TINY.replace(data_seed=5), run, checkpoints=missing).source == "trained"  # not shipped

    (tmp_path / "cache" / "checkpoints" / "tiny.pt").unlink()
    (server / "tiny.pt").write_bytes((server / "tiny.pt").read_bytes() + b"x")  # the server's bytes disagree with its manifest
    with pytest.raises(RuntimeError, match="tiny.pt does not match the sha256"):
        mixture_model(TINY, run, checkpoints=missing)
    assert not (tmp_path / "cache" / "checkpoints" / "tiny.pt").exists()

    monkeypatch.setattr(mi.storage.checkpoints, "CHECKPOINT_URL", (tmp_path / "nowhere").as_uri() + "/")
    monkeypatch.setattr(mi.storage.checkpoints, "_fetched_manifest", set())
    with pytest.warns(UserWarning, match="could not be fetched .* training instead"):
        assert mixture_model(TINY, run, checkpoints=missing).source == "trained"
    # the repository's own folder, present, is never fetched from
    monkeypatch.setattr(mi.storage.checkpoints, "CHECKPOINT_DIR", CHECKPOINT_DIR)
    assert mi.storage.checkpoints.load_shipped(TINY, CHECKPOINT_DIR, run.cache_dir) is None


MANIFEST = load_manifest()


def test_manifest_lists_every_ci_checkpoint_and_only_small_files():
    mk = _make_checkpoints_module()
    by_name = {e["name"]: e for e in MANIFEST}
    assert set(mk.CI_SPECS) <= set(by_name), "run scripts/make_checkpoints.py for new or changed CI specs"
    assert set(by_name) <= set(mk.ALL_SPECS), "a shipped checkpoint that neither CI_SPECS nor PAPER_SPECS names"
    for name, e in by_name.items():
        spec = mk.ALL_SPECS[name]
        assert e["spec_key"] == spec_key(spec), f"{name}: CI_SPECS changed since it was trained"
        assert e["spec"] == json.loads(json.dumps(canonical(spec)))
        path = CHECKPOINT_DIR / e["file"]
        assert path.stat().st_size < 8_000_000  # a paper-scale UNet is 6.3 MB
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"]


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["name"])
def test_shipped_checkpoint_training_reproduces_its_first_losses(entry):
    """Training from the recorded spec reproduces the first recorded losses: the trainer agrees with the file.
    A model trained on a GPU (a paper-scale window's) drew its batches from CUDA's generator, so its first
    losses are retrained only where there is a GPU (skipped elsewhere)."""
    mk = _make_checkpoints_module()
    spec = mk.ALL_SPECS[entry["name"]]
    assert entry["spec_key"] == spec_key(spec), f"{entry['name']}: its spec changed; rerun scripts/make_checkpoints.py"
    train_device = entry.get("train_device", "cpu")
    if train_device != "cpu" and not torch.cuda.is_available():
        pytest.skip(f"trained on {train_device}: its batches came from that device's generator")
    head = spec.replace(train=mi.TrainConfig(**{**spec.train.__dict__, "steps": len(entry["loss_head"])}))
    losses = mi.diffusion.models.train_payload(head, QUIET.replace(device=train_device))["losses"]
    # rtol 1e-3, not 1e-4: the unit tests run on the CPU's own kernels, and twenty steps of the untied 1D
    # network (recorded on an Intel CPU) came out 3.1e-4 apart on an AMD EPYC with AVX-512; a change to the
    # trainer (batches, initialisation, learning rate) moves these losses by far more
    torch.testing.assert_close(losses, torch.tensor(entry["loss_head"]), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["name"])
def test_shipped_checkpoint_reproduces_its_sample_statistics(entry):
    """The shipped weights reproduce the recorded sample statistics (drawn on the CPU, for every entry): the
    file, the loader and the sampler agree with the code."""
    mk = _make_checkpoints_module()
    spec = mk.ALL_SPECS[entry["name"]]
    is_image = isinstance(spec, mi.ImageModelSpec)
    trained = (mi.image_model if is_image else mixture_model)(spec, QUIET)
    assert trained.source == "shipped"
    stats = mk.sample_stats(trained.model, spec)
    expected = entry["sample_stats"]
    torch.testing.assert_close(torch.tensor(stats["mean"]), torch.tensor(expected["mean"]), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.tensor(stats["var"]), torch.tensor(expected["var"]), rtol=1e-3, atol=1e-4)
    if is_image:  # the counter's labels may flip for an image on the threshold when the thread count differs
        labels = set(stats["labels"]) | set(expected["labels"])
        assert sum(abs(stats["labels"].get(k, 0) - expected["labels"].get(k, 0)) for k in labels) <= 4, (stats, expected)
    else:
        assert abs(stats["out_of_support"] - expected["out_of_support"]) <= 2


def test_every_chapter_finds_its_paper_scale_models_in_PAPER_SPECS():
    """The paper-scale models each chapter builds from its own parameters cell (and setup cell, where that
    trains nothing) are named in PAPER_SPECS, so --adopt can ship every model a GPU window trains."""
    nbformat = pytest.importorskip("nbformat", reason="the book toolchain (requirements.txt) is not installed")
    from test_chapter_parameters import CHAPTERS, setup_namespace
    from mi_lib.experiments import mitigations, score_smoothness

    mk = _make_checkpoints_module()
    used = {"02": [*(ns := setup_namespace("02_mode_interpolation_1d", scale="paper"))["setup"].specs.values(),
                   ns["setup"].moved_spec],
            "03": list(setup_namespace("03_mode_interpolation_2d", scale="paper")["specs"].values()),
            "05": list(setup_namespace("05_shapes_hands", scale="paper")["specs"].values()),
            "06": list(setup_namespace("06_detection", scale="paper")["specs"].values())}
    config = setup_namespace("08_mitigations", scale="paper")["config"]
    used["08"] = [m.spec for dataset in config.specs for m in mitigations.methods(config, dataset)]
    params: dict = {}  # chapter 4's setup cell loads its model: only its parameters cell runs here
    exec(next(c for c in nbformat.read(CHAPTERS / "04_score_smoothness.ipynb", 4).cells if c.cell_type == "code").source, params)
    used["04"] = [score_smoothness.setup("paper", *(params[k] for k in ("seed", "means", "sigma", "k", "smoothing_widths",
                                                                      "score_times", "n_samples"))).spec]
    named = {spec_key(spec) for spec in mk.PAPER_SPECS.values()}
    missing = {chapter: [spec for spec in specs if spec_key(spec) not in named] for chapter, specs in used.items()}
    assert not any(missing.values()), f"paper-scale models that PAPER_SPECS does not name: {missing}"
    assert len(named) == len(mk.PAPER_SPECS), "two PAPER_SPECS names for one model"


def test_adopt_ships_the_paper_models_a_window_brought_back(tmp_path, monkeypatch, capsys):
    """--adopt takes the PAPER_SPECS models (mixtures and UNets) out of a window's cache, writes each as a checkpoint
    with its provenance and sample statistics, and leaves out the models no chapter ships."""
    mk = _make_checkpoints_module()
    monkeypatch.setattr(mk, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    real_stats = mk.sample_stats  # a paper UNet's 32 images take minutes on a CPU: the mixture's statistics are real
    monkeypatch.setattr(mk, "sample_stats", lambda model, spec: real_stats(model, spec) if isinstance(spec, MixtureModelSpec)
                        else {"n": 0, "unet": type(model).__name__})
    run = tmp_path / "paper-scale"
    (run / "cache").mkdir(parents=True)
    (run / "run.txt").write_text("commit: abc123 (window 1)\ndate: 20261204-1200\n"
                                 "torch 2.11.0+cu130 | cuda: NVIDIA H200 | 1 device\n")
    grid, shapes = mk.PAPER_SPECS["grid-n100k-paper"], mk.PAPER_SPECS["shapes-paper"]
    tiny = mi.ImageModelSpec("shapes", n_train=8, model=mi.UNetConfig(base_channels=8, channel_mults=(1,), blocks_per_level=1))
    for name, spec in (("mixture-model-a", grid), ("image-model-b", shapes), ("image-model-c", tiny)):
        state = mi.diffusion.models.initial_model(spec.model, 0).state_dict()
        payload = {"state_dict": state, "losses": torch.linspace(1.0, 0.5, 600), "wall_time_s": 12.5,
                   "spec": mi.storage.checkpoints.spec_json(spec)}
        torch.save({"config": {}, "code": "x", "value": payload}, run / "cache" / f"{name}.pt")
    entries = mk.adopt([run])
    assert sorted(entries) == ["grid-n100k-paper", "shapes-paper"]
    assert "image-model-c.pt: not a model of PAPER_SPECS, left out" in capsys.readouterr().out
    e = entries["grid-n100k-paper"]
    assert (e["commit"], e["device"], e["torch"], e["train_device"]) == ("abc123", "NVIDIA H200", "2.11.0+cu130", "cuda")
    assert e["spec_key"] == spec_key(grid) and e["train_wall_time_s"] == 12.5 and len(e["loss_head"]) == mk.LOSS_HEAD
    assert e["sample_stats"]["n"] == mk.STATS_N and entries["shapes-paper"]["sample_stats"]["unet"] == "UNetDenoiser"
    for e in entries.values():
        path = tmp_path / "checkpoints" / e["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"] and path.stat().st_size < 8_000_000
        assert set(torch.load(path, weights_only=True)) == {"spec", "state_dict", "losses", "wall_time_s"}


def test_training_cache_key_holds_the_cpu_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = Settings().training_key()
        torch.set_num_threads(2)
        two = Settings().training_key()
    finally:
        torch.set_num_threads(before)
    assert one != two and one["device"] == "cpu"
    assert Settings(device="meta").training_key() == {"device": "meta"}
    assert Settings(device="meta", fast_train="batch=1").training_key() == {"device": "meta", "fast": {"batch": True}}


TINY_IMAGE = mi.ImageModelSpec(
    "shapes", n_train=16, model=mi.UNetConfig(base_channels=8, channel_mults=(1, 2), blocks_per_level=1, time_dim=16, patch=4),
    train=mi.TrainConfig(steps=3, batch_size=8, ema_decay=0.9), schedule=mi.ScheduleConfig("linear", 10, 1e-3, 0.2),
)


def test_image_spec_validates_and_builds_its_data():
    with pytest.raises(ValueError, match="unknown image dataset 'faces'"):
        mi.ImageModelSpec("faces")
    with pytest.raises(ValueError, match="images are \\(1, 64, 64\\)"):
        mi.ImageModelSpec("shapes", model=mi.UNetConfig(image_size=32))
    with pytest.raises(TypeError, match="UNetConfig"):
        mi.ImageModelSpec("hands", model=mi.MLPConfig())
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        mi.ImageModelSpec("hands", n_train=0)
    for dataset in mi.IMAGE_DATASETS:
        x = TINY_IMAGE.replace(dataset=dataset).training_data()
        assert x.shape == (16, 1, 64, 64) and set(x.unique().tolist()) == {-1.0, 1.0}
    assert spec_key(TINY_IMAGE) != spec_key(TINY_IMAGE.replace(dataset="hands"))


def test_image_model_spec_per_scale_is_what_ships_and_the_defaults():
    shipped = {e["name"]: e["spec_key"] for e in mi.storage.checkpoints.load_manifest()}
    for dataset in mi.IMAGE_DATASETS:
        assert spec_key(mi.image_model_spec(dataset, "ci")) == shipped[f"{dataset}-ci"]
        assert mi.image_model_spec(dataset, "paper") == mi.ImageModelSpec(dataset)
    assert mi.image_model_spec("hands", "ci", n_train=100, data_seed=3).data_seed == 3
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        mi.image_model_spec("shapes", "huge")
    with pytest.raises(ValueError, match="unknown image dataset"):
        mi.image_model_spec("faces", "ci")


def test_image_model_trains_caches_samples_and_keeps_the_ema_weights(tmp_path, monkeypatch):
    run = quiet(tmp_path)
    with pytest.raises(TypeError, match="ImageModelSpec"):
        mi.image_model(TINY)
    with pytest.raises(TypeError, match="MixtureModelSpec"):
        mixture_model(TINY_IMAGE)
    first = mi.image_model(TINY_IMAGE, run)
    assert first.source == "trained" and isinstance(first.model, mi.UNetDenoiser) and len(first.losses) == 3
    payload = mi.diffusion.models.train_payload(TINY_IMAGE, QUIET)
    raw = mi.diffusion.models.initial_model(TINY_IMAGE.model, TINY_IMAGE.train.seed)
    plain = mi.train(raw, TINY_IMAGE.training_data(), mi.NoiseSchedule(TINY_IMAGE.schedule), TINY_IMAGE.train, progress=False)
    for k, v in payload["state_dict"].items():  # the payload holds the EMA weights, not the raw ones
        torch.testing.assert_close(v, plain.ema_model.state_dict()[k])
    assert any(not torch.equal(v, plain.model.state_dict()[k]) for k, v in payload["state_dict"].items())
    out = mi.image_samples(TINY_IMAGE, 5, run, seed=1, hal_window=(0, 2))
    entries = sorted(tmp_path.glob("image-samples-*.pt"))
    again = mi.image_samples(TINY_IMAGE, 5, run, seed=1, hal_window=(0, 2), chunk_size=2)
    assert sorted(tmp_path.glob("image-samples-*.pt")) == entries  # chunk_size is not in the key: one entry
    drawn = mi.sample(first.model, mi.NoiseSchedule(TINY_IMAGE.schedule), 5, seed=1, hal_window=(0, 2), chunk_size=2,
                      clip_x0=mi.diffusion.models.IMAGE_CLIP_X0, progress=False)
    assert out.x0.shape == (5, 1, 64, 64) and out.hal.shape == (5,)
    for served in (again, drawn):  # and rightly so: drawn 2 at a time, the samples are the same bits
        torch.testing.assert_close(out.x0, served.x0, rtol=0, atol=0)
        torch.testing.assert_close(out.hal, served.hal, rtol=0, atol=0)
    assert out.x0.abs().max() <= mi.diffusion.models.IMAGE_CLIP_X0  # x0_hat is clamped at every step, the last included
    free = mi.image_samples(TINY_IMAGE, 5, run, seed=1, hal_window=(0, 2), clip_x0=None)
    assert free.x0.abs().max() > 1.0  # a separate cache entry: the 3-step model strays outside [-1, 1]


def test_initial_model_dispatches_on_the_config_type():
    assert isinstance(mi.diffusion.models.initial_model(mi.MLPConfig(), 0), mi.MLPDenoiser)
    assert isinstance(mi.diffusion.models.initial_model(TINY_IMAGE.model, 0), mi.UNetDenoiser)
    with pytest.raises(TypeError, match="MLPConfig or a UNetConfig"):
        mi.diffusion.models.initial_model({"width": 8}, 0)


@pytest.mark.parametrize("text, kind, expected", [
    ("", "train", {}),
    ("precision=float32, compile=0, fused=0", "train", {}),  # the defaults: no key change at all
    ("precision=bf16,compile=reduce-overhead,fused=1", "train", {"precision": "bf16", "compile": "reduce-overhead", "fused": True}),
    ("graph=1,fused=1", "train", {"graph": True, "fused": True}),
    ("graph=0", "train", {}),
    ("compile=1", "sample", {"compile": True}),
    ("fused=1,precision=bf16", "sample", {"fused": True, "precision": "bf16"}),
    ("compile=default,precision=tf32", "sample", {"compile": True, "precision": "tf32"}),
])
def test_fast_options_parse(text, kind, expected):
    from mi_lib.settings import parse_fast_options

    assert parse_fast_options(kind, text) == expected
    assert parse_fast_options(kind, expected) == expected  # a mapping, as Settings takes it


def test_the_environment_sets_the_fast_paths_and_the_fused_sampler_only_for_runs_it_can_take(monkeypatch):
    """MI_FAST_SAMPLE=fused=1 reaches the MLP's sampling runs; a UNet's run (fusable=False) samples without it."""
    monkeypatch.setenv("MI_FAST_SAMPLE", "fused=1,precision=bf16")
    monkeypatch.setenv("MI_FAST_TRAIN", "batch=1")
    settings = Settings.from_environment("cpu")
    assert settings.sample_options(fusable=False) == {"precision": "bf16"}
    assert settings.sample_options() == {"fused": True, "precision": "bf16"}
    assert settings.fast_train == {"batch": True} and settings.train_options() == {}


@pytest.mark.parametrize("kind, text, match", [
    ("train", "precision=fp16", "precision must be one of"),
    ("train", "compile=fast", "compile must be 0, 1 or one of"),
    ("train", "fused=maybe", "fused must be 0 or 1"),
    ("train", "graph=yes please", "graph must be 0 or 1"),
    ("sample", "graph=1", "not one of precision=..., compile=..."),
    ("train", "precision=bf16,precision=tf32", "given twice"),
    ("train", "bf16", "not one of"),
])
def test_fast_options_reject_bad_values_naming_the_variable(monkeypatch, kind, text, match):
    name = {"train": "MI_FAST_TRAIN", "sample": "MI_FAST_SAMPLE"}[kind]
    monkeypatch.setenv(name, text)
    with pytest.raises(ValueError, match=match) as error:
        Settings.from_environment("cpu")
    assert name in str(error.value)
    with pytest.raises(ValueError, match=match):
        Settings(**{f"fast_{kind}": text})


def test_settings_check_their_values_and_the_library_takes_no_other():
    with pytest.raises(TypeError, match="progress must be True or False"):
        Settings(progress="no")
    with pytest.raises(ValueError, match="device must be a torch.device or its name .*, got 'gpu'"):
        Settings(device="gpu")
    with pytest.raises(TypeError, match="settings must be a mi_lib.Settings"):
        mixture_model(TINY, "cpu")
    with pytest.raises(TypeError, match="settings must be a mi_lib.Settings"):
        mi.recursive_training(TINY, mi.RecursionConfig(model=TINY.model, schedule=TINY.schedule), "cpu")


def test_fast_paths_reach_training_and_sampling_with_their_own_cache_entries(tmp_path, monkeypatch):
    """The settings' fast paths switch on those of the runs mixture_model and mixture_samples start (bf16 works
    on a CPU): another model and other samples, under other keys, recorded in the results."""
    import json

    plain_run = quiet(tmp_path / "cache")
    plain = mixture_model(TINY, plain_run, checkpoints=None)
    plain_x0 = mixture_samples(TINY, 40, plain_run, seed=1).x0
    calls = []
    real_sample = mi.diffusion.models.sample
    monkeypatch.setattr(mi.diffusion.models, "sample", lambda *a, **k: calls.append(k) or real_sample(*a, **k))
    bf16_sampling = plain_run.replace(fast_sample="precision=bf16")
    fast_x0 = mixture_samples(TINY, 40, bf16_sampling, seed=1).x0  # the same (cached) model, sampled in bf16
    assert calls and calls[-1]["precision"] == "bf16" and not torch.equal(fast_x0, plain_x0)
    assert torch.equal(mixture_samples(TINY, 40, plain_run, seed=1).x0, plain_x0)  # the plain entry is still there
    bf16_training = plain_run.replace(fast_train={"precision": "bf16"})
    fast = mixture_model(TINY, bf16_training, checkpoints=None)
    assert fast.source == "trained" and fast.origin == "trained:cpu (precision=bf16)" and plain.origin == "trained:cpu"
    assert any(not torch.equal(p, q) for p, q in zip(plain.model.parameters(), fast.model.parameters()))
    recorded = bf16_training.replace(results_dir=tmp_path / "results", fast_sample="compile=0")  # the default: not recorded
    path = mi.save_results("00_test", {"x": 1.0}, scale="paper", settings=recorded, wall_time_s=1.0)
    assert path.parent == tmp_path / "results"
    assert json.loads(path.read_text())["paper"]["fast"] == {"train": {"precision": "bf16"}}
    path = mi.save_results("00_test", {"x": 1.0}, scale="paper", settings=recorded.replace(fast_train=""), wall_time_s=1.0)
    assert "fast" not in json.loads(path.read_text())["paper"]


def test_mixture_models_trains_what_it_can_together(tmp_path, monkeypatch):
    """With fast_train batch=1, the specs of one network and optimiser (other N, seeds and data) are trained as
    one stacked network and cached under mixture_model's own keys; a spec of another network is trained alone;
    a duplicate is trained once. Each batched model matches its solo training's first losses (train_many's test
    holds the rest), and without batch=1 the call is mixture_model in a loop."""
    batched = quiet(tmp_path / "cache").replace(fast_train="batch=1")
    calls = []
    real = mi.diffusion.models.train_many
    monkeypatch.setattr(mi.diffusion.models, "train_many", lambda models, *a, **k: calls.append(len(models)) or real(models, *a, **k))
    other_n, other_seed = TINY.replace(n_train=80), TINY.replace(data_seed=3, train=mi.TrainConfig(steps=5, batch_size=32, seed=9))
    wider = TINY.replace(model=mi.MLPConfig(width=32, time_dim=16))
    got = mi.mixture_models([TINY, other_n, other_seed, wider, TINY], batched, checkpoints=None)
    assert calls == [3] and [m.source for m in got] == ["trained"] * 5
    assert torch.equal(got[0].model.in_proj.weight, got[4].model.in_proj.weight)
    again = mixture_model(other_seed, batched, checkpoints=None)  # the cache entry mixture_models wrote
    assert calls == [3] and torch.equal(again.model.in_proj.weight, got[2].model.in_proj.weight)
    solo = mi.mixture_models([TINY, other_seed], quiet(tmp_path / "solo"), checkpoints=None)
    assert calls == [3]
    for batched, alone in zip((got[0], got[2]), solo):
        torch.testing.assert_close(batched.losses[:3], alone.losses[:3], rtol=1e-5, atol=0)

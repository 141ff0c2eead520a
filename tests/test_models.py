"""Trained models: specs, the shipped-or-trained lookup, and the shipped checkpoints' manifest (each
checkpoint must still produce the statistics recorded when it was made)."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import mi_lib as mi
from mi_lib.cache import _canonical
from mi_lib.models import CHECKPOINT_DIR, MixtureModelSpec, load_manifest, mixture_model, mixture_samples, spec_key

ROOT = Path(__file__).resolve().parents[1]
TINY = MixtureModelSpec("1d", n_train=64, model=mi.MLPConfig(width=16, time_dim=16), train=mi.TrainConfig(steps=5, batch_size=32),
                        schedule=mi.ScheduleConfig("linear", 20, 1e-3, 0.2))


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
    monkeypatch.setenv("MI_CACHE_DIR", str(tmp_path))
    first = mixture_model(TINY, progress=False, checkpoints=tmp_path / "none")
    assert first.source == "trained" and len(first.losses) == 5
    monkeypatch.setattr(mi.models, "train", lambda *a, **k: pytest.fail("a cached model was retrained"))
    again = mixture_model(TINY, progress=False, checkpoints=tmp_path / "none")
    for p, q in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)
    s1 = mixture_samples(TINY, 50, seed=3, progress=False)
    s2 = mixture_samples(TINY, 50, seed=3, progress=False)
    assert torch.equal(s1.x0, s2.x0) and s1.x0.shape == (50, 1)
    assert not torch.equal(s1.x0, mixture_samples(TINY, 50, seed=4, progress=False).x0)


def test_shipped_checkpoint_is_used_only_for_its_exact_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("MI_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    payload = mi.models.train_payload(TINY, "cpu", progress=False)
    torch.save(payload, folder / "tiny.pt")
    entry = {"name": "tiny", "file": "tiny.pt", "spec_key": spec_key(TINY), "sha256": hashlib.sha256((folder / "tiny.pt").read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": [entry]}))
    assert mixture_model(TINY, checkpoints=folder, progress=False).source == "shipped"
    assert mixture_model(TINY.replace(data_seed=5), checkpoints=folder, progress=False).source == "trained"
    (folder / "tiny.pt").write_bytes((folder / "tiny.pt").read_bytes() + b"x")  # a corrupted file is an error
    with pytest.raises(RuntimeError, match="sha256"):
        mixture_model(TINY, checkpoints=folder, progress=False)


MANIFEST = load_manifest()


def test_manifest_lists_every_ci_checkpoint_and_only_small_files():
    ci_specs = _make_checkpoints_module().CI_SPECS
    by_name = {e["name"]: e for e in MANIFEST}
    assert set(by_name) == set(ci_specs), "run scripts/make_checkpoints.py for new or changed CI specs"
    for name, spec in ci_specs.items():
        e = by_name[name]
        assert e["spec_key"] == spec_key(spec), f"{name}: CI_SPECS changed since it was trained"
        assert e["spec"] == json.loads(json.dumps(_canonical(spec)))
        path = CHECKPOINT_DIR / e["file"]
        assert path.stat().st_size < 5_000_000
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"]


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["name"])
def test_shipped_checkpoint_reproduces_its_manifest(entry):
    """Training from the recorded spec reproduces the first recorded losses, and the shipped weights
    reproduce the recorded sample statistics: the file, the trainer and the sampler agree with the code."""
    mk = _make_checkpoints_module()
    spec = mk.CI_SPECS[entry["name"]]
    assert entry["spec_key"] == spec_key(spec), f"{entry['name']}: CI_SPECS changed; rerun scripts/make_checkpoints.py"
    head = spec.replace(train=mi.TrainConfig(**{**spec.train.__dict__, "steps": len(entry["loss_head"])}))
    losses = mi.models.train_payload(head, "cpu", progress=False)["losses"]
    torch.testing.assert_close(losses, torch.tensor(entry["loss_head"]), rtol=1e-4, atol=1e-6)
    trained = mixture_model(spec, progress=False)
    assert trained.source == "shipped"
    stats = mk.sample_stats(trained.model, spec)
    expected = entry["sample_stats"]
    torch.testing.assert_close(torch.tensor(stats["mean"]), torch.tensor(expected["mean"]), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.tensor(stats["var"]), torch.tensor(expected["var"]), rtol=1e-3, atol=1e-4)
    assert abs(stats["out_of_support"] - expected["out_of_support"]) <= 2


def test_training_cache_key_holds_the_cpu_thread_count():
    from mi_lib.models import training_device_key

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = training_device_key("cpu")
        torch.set_num_threads(2)
        two = training_device_key("cpu")
    finally:
        torch.set_num_threads(before)
    assert one != two and one["device"] == "cpu"
    assert training_device_key("meta") == {"device": "meta"}

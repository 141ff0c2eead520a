"""The checkpoints shipped in ``data/checkpoints``: each listed in ``manifest.json`` with the spec it was trained for
(its canonical JSON, :func:`spec_json`, and that JSON's hash, :func:`spec_key`) and the file's SHA-256. A checkpoint is
used only when its recorded spec equals the one asked for exactly (:func:`load_shipped`), so a changed spec trains
anew. Installed without the repository's ``data/`` (Colab), the files are fetched from :data:`CHECKPOINT_URL` on first
use and checked against the manifest fetched with them.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import torch

from .cache import canonical, write_atomic

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_URL", "file_sha256", "load_manifest", "load_shipped", "spec_json", "spec_key"]

#: The shipped checkpoints (``data/checkpoints`` at the repository root).
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "data" / "checkpoints"
#: Where ``mi_lib`` installed without the repository's ``data/`` folder (``pip install`` from git, as on Colab)
#: fetches the shipped checkpoints from, on first use: the same folder of the repository. Each file is checked
#: against the sha256 of the manifest fetched with it and kept in the cache folder's ``checkpoints/``. Nothing is
#: fetched where ``data/checkpoints`` is present (a clone, the CI machines).
CHECKPOINT_URL = "https://raw.githubusercontent.com/mode-interpolation/mode-interpolation-book/main/data/checkpoints/"



def spec_json(spec: Any) -> str:
    """The canonical JSON of a spec: what checkpoints record and what :func:`spec_key` hashes."""
    return json.dumps(canonical(spec), sort_keys=True)


def spec_key(spec: Any) -> str:
    """A stable 16-hex-digit fingerprint of a spec (independent of the library's source, unlike the cache)."""
    return hashlib.sha256(spec_json(spec).encode()).hexdigest()[:16]


def load_manifest(folder: Path | str = CHECKPOINT_DIR) -> list[dict[str, Any]]:
    """The manifest's entries (an empty list if there is none)."""
    path = Path(folder) / "manifest.json"
    return json.loads(path.read_text())["checkpoints"] if path.exists() else []


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(url: str, path: Path) -> None:
    """Download ``url`` to ``path`` whole or not at all."""
    with urllib.request.urlopen(url, timeout=60) as response:
        write_atomic(path, path.name, response.read())


_fetched_manifest: set[Path] = set()  # mirrors whose manifest this process has fetched (once per process)


def _fetched_checkpoints(spec: Any, mirror: Path) -> dict[str, Any] | None:
    """The shipped checkpoint of ``spec`` fetched from :data:`CHECKPOINT_URL` into ``mirror`` (see there);
    None, with one warning, where the repository cannot be reached (the model is then trained)."""
    try:
        if mirror not in _fetched_manifest:
            try:
                _fetch(CHECKPOINT_URL + "manifest.json", mirror / "manifest.json")
            except OSError:
                if not (mirror / "manifest.json").is_file():
                    raise
                # offline: the manifest fetched before still names the files (each is checked against it)
            _fetched_manifest.add(mirror)
        entry = next((e for e in load_manifest(mirror) if e["spec_key"] == spec_key(spec)), None)
        if entry is not None and not ((mirror / entry["file"]).is_file() and file_sha256(mirror / entry["file"]) == entry["sha256"]):
            _fetch(CHECKPOINT_URL + entry["file"], mirror / entry["file"])
            if file_sha256(mirror / entry["file"]) != entry["sha256"]:
                (mirror / entry["file"]).unlink()
                raise RuntimeError(f"{CHECKPOINT_URL + entry['file']} does not match the sha256 of its manifest entry: not used")
    except OSError as error:  # no network, a missing file on the server: train instead, as without shipped files
        warnings.warn(f"the shipped checkpoints could not be fetched from {CHECKPOINT_URL} ({error}); training instead", stacklevel=4)
        return None
    return load_shipped(spec, mirror, mirror.parent)


def load_shipped(spec: Any, folder: Path, cache_dir: Path) -> dict[str, Any] | None:
    """The payload of the checkpoint shipped in ``folder`` for exactly ``spec``, or None if there is none. The
    repository's own folder, when absent (an install without ``data/``), is fetched into ``cache_dir``."""
    if folder == CHECKPOINT_DIR and not folder.is_dir():  # installed without the repository's data/ (Colab): fetch them
        return _fetched_checkpoints(spec, cache_dir / "checkpoints")
    key = spec_key(spec)
    for entry in load_manifest(folder):
        if entry["spec_key"] == key:
            path = folder / entry["file"]
            if file_sha256(path) != entry["sha256"]:
                raise RuntimeError(f"{path} does not match the sha256 recorded in its manifest; restore it from git")
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload["spec"] != spec_json(spec):
                raise RuntimeError(f"{path} was trained for a different spec than its manifest entry says")
            return payload
    return None

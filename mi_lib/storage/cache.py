"""On-disk cache for trained models and expensive results, keyed by a hash of their full configuration.

The key hashes the configuration (dataclasses, dicts, numbers, strings, tensors) *and* the source of the code
that computes the value: the modules its caller names (``code``) and every ``mi_lib`` module they import,
directly or not (:func:`code_modules`, :func:`code_fingerprint`). So a changed config, trainer, network or
sampler never returns a stale entry, while editing a figure helper or a chapter's module retrains nothing. The
stored config is also compared on load. Entries are written atomically (temporary file + rename) and always
loaded onto the CPU, so the same entry serves CPU and GPU sessions; move what you load with ``.to(device)``.
Whatever ``compute`` depends on (data seed, sizes, device-independent settings) must be in ``config``.

Every entry lives in the folder its caller names (``root``: a :class:`mi_lib.Settings`' ``cache_dir``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..environment import CPU_NUMERICS_VARS, cpu_numerics

__all__ = ["CPU_NUMERICS_VARS", "KEY_OMITS_DEFAULT", "PRESENTATION", "config_key", "cache_path", "cached", "code_fingerprint", "code_modules", "cpu_numerics", "partial_path"]

T = TypeVar("T")

#: Field metadata for a config field added after keys were recorded (shipped checkpoints, cached results): at its
#: default the field is left out of the canonical form, so every key made before it existed still stands.
KEY_OMITS_DEFAULT = {"key": "omit_default"}


def canonical(obj: Any) -> Any:
    """A JSON-able, order-independent form of a configuration."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [f for f in dataclasses.fields(obj)
                  if not (f.metadata.get("key") == "omit_default" and getattr(obj, f.name) == f.default)]
        return {"__type__": type(obj).__name__, **{f.name: canonical(getattr(obj, f.name)) for f in fields}}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": hashlib.sha256(obj.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, float):
        return {"__float__": repr(obj)}  # exact; distinct from the int 1 and from the string "1.0"
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot hash a config value of type {type(obj).__name__}: {obj!r}")


#: Modules that change no computed result -- figures, the results files, the chapters' parameter checks, the
#: environment's parser -- and are left out of :func:`code_fingerprint` even where imported: editing them
#: recomputes nothing. Names are paths inside the package, as :func:`code_modules` gives them.
PRESENTATION = frozenset({"plotting.py", "storage/results.py", "params.py", "environment.py"})

#: The package whose modules :func:`code_modules` names: mi_lib.
PACKAGE = Path(__file__).resolve().parents[1]

#: The ``code`` a caller names: a module of the package (its path inside it, such as ``"diffusion/train.py"``),
#: several, or None for all of them outside ``experiments/`` (the safe default).
Code = str | Sequence[str] | None


def _module_file(folder: Path, dotted: str) -> Path | None:
    """The file of module ``dotted`` under ``folder`` (``a.b`` -> a/b.py or a/b/__init__.py), if any."""
    base = folder.joinpath(*dotted.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


@functools.lru_cache(maxsize=None)
def _imports(path: Path, mtime_ns: int, package: Path) -> frozenset[str]:
    """The modules of ``package`` that ``path`` imports relatively (``from .x import y``, ``from ..a.b import y``,
    ``from . import x``), anywhere in it (a function's lazy import too), as paths inside ``package``; cached per
    file version. A subpackage's ``__init__.py`` counts only where it is imported itself (they hold only their
    docstrings: ``tests/test_repo.py``); mi_lib imports itself only relatively (the same test)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.ImportFrom) and node.level > 0):
            continue
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        if node.module:
            target = _module_file(base, node.module)
            found.update([target] if target is not None else [])
            if target is not None and target.name == "__init__.py":  # from .pkg import module
                found.update(f for alias in node.names if (f := _module_file(target.parent, alias.name)) is not None)
        else:  # from . import x, y: modules, or names the package's __init__ defines (then that file)
            found.update(_module_file(base, alias.name) or base / "__init__.py" for alias in node.names)
    return frozenset(f.relative_to(package).as_posix() for f in found if f.is_relative_to(package))


def code_modules(code: Code = None, package: Path | str | None = None) -> tuple[str, ...]:
    """The modules whose source a value computed by ``code`` depends on: the named modules of ``package``
    (default ``mi_lib``; paths inside it, e.g. ``"diffusion/models.py"`` or ``("experiments/recursion.py",
    "measure/detection.py")``) and every module they import, directly or not, less :data:`PRESENTATION`.
    ``None``: every module of the package outside ``experiments/``."""
    folder = Path(package or PACKAGE)
    if code is None:
        every = (p.relative_to(folder).as_posix() for p in folder.rglob("*.py"))
        return tuple(sorted(n for n in every if not n.startswith("experiments/") and n not in PRESENTATION))
    todo = [code] if isinstance(code, str) else list(code)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = folder / name
        if not path.is_file():
            raise ValueError(f"code names {name!r}, which is not a module of {folder}")
        seen.add(name)
        todo.extend(_imports(path, path.stat().st_mtime_ns, folder))
    return tuple(sorted(seen - PRESENTATION))


def code_fingerprint(package: Path | str | None = None, code: Code = None) -> str:
    """SHA-256 of the source of :func:`code_modules` (``code``, ``package``): a change to any of them -- the
    trainer, the networks, the sampler, the data -- invalidates the entries they compute."""
    folder = Path(package or PACKAGE)
    h = hashlib.sha256()
    for name in code_modules(code, folder):
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def config_key(name: str, config: Any, *, code: Code = None) -> str:
    """The cache key of ``config`` under ``name``: ``name-<16 hex digits>``. It also holds the source of the code
    that computes the value (:func:`code_fingerprint` of ``code``) and the CPU kernel settings
    (:func:`cpu_numerics`) where any is set."""
    return _key(name, config, code_fingerprint(code=code))


def _key(name: str, config: Any, fingerprint: str) -> str:
    numerics = cpu_numerics()
    payload = json.dumps({"name": name, "config": canonical(config), "code": fingerprint,
                          **({"cpu_numerics": numerics} if numerics else {})}, sort_keys=True)
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def cached(name: str, config: Any, compute: Callable[[], T], *, root: Path | str, code: Code = None, refresh: bool = False) -> T:
    """Return ``compute()``'s value for ``config``, computing and storing it in the folder ``root`` on a miss.

    ``code``: the modules that compute it (:func:`code_modules`; None: all of ``mi_lib`` outside ``experiments/``). The value must be
    torch-serialisable (tensors, state dicts, numbers, lists, dicts). ``refresh=True`` recomputes and overwrites."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"cache name must be a plain non-empty file name, got {name!r}")
    folder = Path(root)
    fingerprint = code_fingerprint(code=code)  # read once: the key and the stored entry both hold it
    key = _key(name, config, fingerprint)
    path = folder / f"{key}.pt"
    expected = json.dumps(canonical(config), sort_keys=True)
    if path.exists() and not refresh:
        entry = load_or_warn(path, "cache entry")
        if entry is not None and entry.get("config") == expected and entry.get("code") == fingerprint:
            return entry["value"]
    value = compute()
    buffer = io.BytesIO()
    torch.save({"config": expected, "code": fingerprint, "value": value}, buffer)
    try:  # refuse to store what a later hit could not load
        entry = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
    except Exception as err:
        raise TypeError(f"cached values must be tensors, numbers, strings, lists or dicts of them: {err}") from err
    write_atomic(path, key, buffer.getvalue())
    return entry["value"]  # what a later hit returns (CPU tensors), so a hit and a miss behave the same


def cache_path(name: str, config: Any, *, root: Path | str, code: Code = None) -> Path:
    """The file :func:`cached` keeps the entry (``name``, ``config``, ``code``) in (it may not exist yet)."""
    return Path(root) / f"{config_key(name, config, code=code)}.pt"


def load_or_warn(path: Path, what: str) -> Any:
    """``torch.load(path)`` onto the CPU, or None with one warning naming the file if it cannot be read (a
    truncated copy, say: torch's own error is about zip archives), so the caller computes it again."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and EOF errors alike: the file is unusable
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"{path}: this {what} cannot be read ({type(error).__name__}: {first_line}); computing it again", stacklevel=3)
        return None


def partial_path(name: str, config: Any, *, root: Path | str, code: Code = None) -> Path:
    """Where a long computation of :func:`cached`'s entry (``name``, ``config``) keeps its resumable progress
    (e.g. :func:`mi_lib.diffusion.train.train`'s ``resume`` file): ``<key>.partial.pt`` beside the entry. The key is the
    entry's, so a changed config or computing code never resumes stale progress."""
    return Path(root) / f"{config_key(name, config, code=code)}.partial.pt"


def write_atomic(path: Path, key: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` whole or not at all (a temporary file named after ``key``, renamed)."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

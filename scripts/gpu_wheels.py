"""Download into .whl/ the wheels the lent GPU machine lacks to execute the chapters with papermill.

    python scripts/gpu_wheels.py            # (make gpu-wheels) -> .whl/*.whl, listed with their sizes

That machine has Python 3.12, torch, numpy, matplotlib, scipy, tqdm, pyyaml, jinja2, pygments, ... (GPU_HAS
below, from the device tool's KINDS.md) but no jupyter stack and no package index. Starting from ROOTS, the
script downloads each package the machine lacks at the version installed in this checkout's .venv (the
environment the CI-scale chapters are checked in), reads the wheel's own Requires-Dist (markers evaluated for
CPython 3.12 on x86-64 Linux, extras off) and follows them, so the set is closed by construction. One version
of each: wheels in .whl/ outside the set are removed (two versions of one package stop `pip install --no-deps`).
It also writes .whl/COMMIT (this checkout's commit) for scripts/paper_scale.sh, which travels without .git.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

# What papermill needs to run a chapter: the CLI, the "python3" kernel, the inline backend, and what the
# chapters import besides mi_lib's own needs (torch, numpy, scipy, matplotlib, tqdm: all on that machine).
ROOTS = ["papermill", "ipykernel", "matplotlib-inline", "ipywidgets"]

# Python packages on the lent GPU machines (image 'cuda', as the device tool's KINDS.md lists them).
GPU_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# The device tool's recipe; pip matches manylinux_2_N exactly, so more N are tried when these find nothing.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
MORE_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def target_env(python_version: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=python_version, python_full_version=f"{python_version}.0", implementation_name="cpython",
               platform_python_implementation="CPython", sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", os_name="posix")
    return env


def wheel_of(dest: Path, name: str, version: str) -> Path | None:
    for path in dest.glob("*.whl"):
        dist, ver = path.name.split("-")[:2]
        if norm(dist) == name and Version(ver) == Version(version):
            return path
    return None


def download(dest: Path, name: str, version: str, python_version: str) -> Path:
    for platforms in (PLATFORMS, PLATFORMS + MORE_PLATFORMS):
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)],
               "-d", str(dest), f"{name}=={version}"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode == 0 and (path := wheel_of(dest, name, version)):
            return path
    raise SystemExit(f"no wheel of {name}=={version} for CPython {python_version} on x86-64 Linux:\n{run.stderr}")


def requires(wheel: Path, env: dict[str, str]) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(zf.read(meta).decode())
    out = []
    for line in headers.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.append(req)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default=str(ROOT / ".whl"), help="folder for the wheels (default: .whl)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default: 3.12)")
    args = parser.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    env = target_env(args.python_version)

    chosen: dict[str, Path] = {}
    queue, problems = list(ROOTS), []
    while queue:
        name = norm(queue.pop(0))
        if name in chosen or name in GPU_HAS:
            continue
        try:
            version = md.version(name)  # the .venv's version: pip download pins it exactly
        except md.PackageNotFoundError:
            raise SystemExit(f"{name} is needed on the GPU machine but not installed in this venv: add it to requirements.txt")
        chosen[name] = wheel_of(dest, name, version) or download(dest, name, version, args.python_version)
        for req in requires(chosen[name], env):
            dep = norm(req.name)
            if dep not in GPU_HAS:
                queue.append(dep)
                have = _version(dep)
                if have and req.specifier and not req.specifier.contains(have, prereleases=True):
                    problems.append(f"{name} wants {req}, the venv has {dep} {have}")

    for path in dest.glob("*.whl"):  # one version of each package, nothing else
        if path not in chosen.values():
            print(f"removing {path.name} (not in the set)")
            path.unlink()
    commit = _commit()
    (dest / "COMMIT").write_text(commit + "\n")

    total = 0
    for name in sorted(chosen):
        size = chosen[name].stat().st_size
        total += size
        print(f"{size / 2**20:7.2f} MiB  {chosen[name].name}")
    print(f"{total / 2**20:7.2f} MiB  total, {len(chosen)} wheels in {dest} (commit stamp {commit})")
    if problems:
        raise SystemExit("version conflicts:\n  " + "\n  ".join(problems))
    if total > 48 * 2**20:
        raise SystemExit("the wheels exceed 48 MiB: the working tree and carried paths may hold 64 MiB per call")


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _commit() -> str:
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()

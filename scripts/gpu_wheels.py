"""Download into .whl/ the wheels the lent GPU machine lacks to run the chapters with papermill (make gpu-wheels): from
ROOTS, each package not in GPU_HAS (that machine's, from the device tool's KINDS.md) at this .venv's version, following
Requires-Dist (CPython 3.12, x86-64 Linux, no extras), one version each (others in .whl/ are removed: two stop
`pip install --no-deps`); and .whl/COMMIT, the commit stamp results there record (scripts/paper_scale.sh).
"""

from __future__ import annotations
import argparse, importlib.metadata as md, re, subprocess, sys, zipfile  # noqa: E401
from email.parser import Parser
from pathlib import Path
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ["papermill", "ipykernel", "matplotlib-inline", "ipywidgets"]  # the CLI, the kernel, the inline backend, widgets
GPU_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi charset-normalizer chex
click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet
httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow
pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
# pip matches manylinux_2_N exactly: these first, then every N
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

def target_env(python_version: str) -> dict[str, str]:  # CPython on x86-64 Linux
    return {**default_environment(), "python_version": python_version, "python_full_version": f"{python_version}.0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}

def wheel(dest: Path, name: str, version: str, python_version: str) -> Path:
    """The wheel of name==version in ``dest``, downloaded if it is not there yet."""
    for platforms in ([], PLATFORMS, PLATFORMS + [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)]):
        err = platforms and subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                                            python_version, "--implementation", "cp", *[a for p in platforms for a in ("--platform", p)],
                                            "-d", str(dest), f"{name}=={version}"], capture_output=True, text=True).stderr
        for path in dest.glob("*.whl"):
            if norm(path.name.split("-")[0]) == name and Version(path.name.split("-")[1]) == Version(version):
                return path
    raise SystemExit(f"no wheel of {name}=={version} for CPython {python_version} on x86-64 Linux:\n{err}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl", help="folder for the wheels (default: .whl)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default: 3.12)")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    env, chosen, queue, problems = {**target_env(args.python_version), "extra": ""}, {}, list(ROOTS), []
    venv = dict(reversed([(norm(d.metadata["Name"]), d.version) for d in md.distributions() if d.metadata["Name"]]))  # first wins
    while queue:
        name = norm(queue.pop(0))
        if name in chosen or name in GPU_HAS:
            continue
        if not (version := venv.get(name)):  # this venv's version, pinned exactly
            raise SystemExit(f"{name} is needed on the GPU machine but not installed in this venv: add it to requirements.txt")
        chosen[name] = wheel(args.dest, name, version, args.python_version)
        with zipfile.ZipFile(chosen[name]) as zf:
            meta = Parser().parsestr(zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode())
        for req in map(Requirement, meta.get_all("Requires-Dist") or []):
            if norm(req.name) not in GPU_HAS and (req.marker is None or req.marker.evaluate(env)):
                queue.append(req.name)
                if (have := venv.get(norm(req.name))) and req.specifier and not req.specifier.contains(have, prereleases=True):
                    problems.append(f"{name} wants {req}, the venv has {have}")
    for path in set(args.dest.glob("*.whl")) - set(chosen.values()):
        print(f"removing {path.name} (not in the set)")
        path.unlink()
    from mi_lib.storage.results import git_commit  # the chapters' own stamp (a run's outputs do not make it dirty)
    commit = git_commit()
    (args.dest / "COMMIT").write_text(commit + "\n")
    total = sum(p.stat().st_size for p in chosen.values())
    print("\n".join(f"{p.stat().st_size / 2**20:7.2f} MiB  {p.name}" for p in sorted(chosen.values())))
    print(f"{total / 2**20:7.2f} MiB  total, {len(chosen)} wheels in {args.dest} (commit stamp {commit})")
    if problems:
        raise SystemExit("version conflicts:\n  " + "\n  ".join(problems))
    if total > 48 * 2**20:
        raise SystemExit("the wheels exceed 48 MiB: the working tree and carried paths may hold 64 MiB per call")

if __name__ == "__main__":
    main()

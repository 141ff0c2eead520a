import importlib.util
import os
import platform
import subprocess
from pathlib import Path

# Before numpy loads: its OpenBLAS multiplies with the kernels of the CPU it detects, or of $OPENBLAS_CORETYPE, and
# the Haswell ones (what CI machines of the AMD EPYC kind set there) round a row of a product differently by where
# the row sits in its block. Triton's interpreter multiplies through numpy, so the fused sampler's samples would then
# depend on the chunk they are drawn in (tests/test_fused.py asserts they do not, as on a GPU). The Sandybridge
# kernels (AVX: every x86-64 CI machine) round each row alike, as the SkylakeX ones an Intel Xeon detects do.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ["OPENBLAS_CORETYPE"] = "Sandybridge"

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("MI_PROGRESS", "0")
if "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count (e.g. beside other jobs) wins
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def results_table(tmp_path, monkeypatch):
    """scripts/results_table.py as a module whose results/ folder is ``tmp_path / "results"`` (created)."""
    spec = importlib.util.spec_from_file_location("results_table", Path(__file__).resolve().parents[1] / "scripts" / "results_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    (tmp_path / "results").mkdir(exist_ok=True)
    monkeypatch.setattr(table, "ROOT", tmp_path)
    return table


@pytest.fixture
def make_n():
    """``make_n(target, *args)``: the commands ``make -n`` prints for a target of the repository's Makefile."""

    def run(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SCALE")}  # not the calling make's
        out = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=Path(__file__).resolve().parents[1], env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run

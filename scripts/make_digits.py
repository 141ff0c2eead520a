"""Write data/digits/digits_8x8.npz: scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits"
test set (1,797 images of 8x8 pixels, values 0..16, labels 0..9), stored compactly for mi_lib.datasets.digits.

scikit-learn is not a dependency of the book; run this once with a throwaway environment:

    python3 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn
    /tmp/skl/bin/python scripts/make_digits.py

The arrays are exactly ``sklearn.datasets.load_digits()``'s ``images`` and ``target``, cast to uint8 (lossless:
every value is an integer in 0..16 or 0..9), in the same order. The npz is a deflated zip whose members carry a
fixed timestamp, so rerunning gives the same bytes (with the same zlib) and the sha256 that data/digits/README.md
and mi_lib.datasets.digits.DIGITS_SHA256 record; the script prints it.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data" / "digits" / "digits_8x8.npz"


def deterministic_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz (a zip of .npy files) with fixed member timestamps, so the bytes depend only on the arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main() -> int:
    from sklearn import __version__ as sklearn_version  # here, so that deterministic_npz imports without it
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images, bunch.target
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert np.array_equal(images, np.round(images)) and images.min() == 0 and images.max() == 16
    assert set(np.unique(labels).tolist()) == set(range(10))
    arrays = {"images": images.astype(np.uint8), "labels": labels.astype(np.uint8)}
    assert np.array_equal(arrays["images"], images) and np.array_equal(arrays["labels"], labels)
    write_npz(OUT, arrays, f"scikit-learn {sklearn_version}")
    return 0


def write_npz(out: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    """Write ``arrays`` (with ``labels``) to ``out`` with :func:`deterministic_npz`; print its size, sha256 and
    the labels per class (what the data READMEs record)."""
    data = deterministic_npz(arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data):,} bytes) from {source}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"labels per class {np.bincount(arrays['labels'], minlength=10).tolist()}")


if __name__ == "__main__":
    sys.exit(main())

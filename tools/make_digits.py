"""Writes lvmjax/datasets/digits.npz from scikit-learn's copy of the UCI digits.

    python tools/make_digits.py    (needs scikit-learn, which lvmjax itself never imports)

`sklearn.datasets.load_digits()` is the test set of the UCI "Optical Recognition of
Handwritten Digits" data: 1797 images of 8x8 pixels with values 0..16, and their
labels 0..9. They are stored unchanged, in scikit-learn's order, as the arrays
`images` (1797, 64) uint8 and `labels` (1797,) uint8; `lvmjax.data.load_digits`
binarizes and splits them. See lvmjax/datasets/README.md.
"""

from __future__ import annotations

import pathlib

import numpy as np
from sklearn.datasets import load_digits

OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "lvmjax" / "datasets" / "digits.npz"


def main() -> None:
    digits = load_digits()
    images = np.asarray(digits.data)
    labels = np.asarray(digits.target)
    # The conversion to uint8 must not change a value.
    if images.shape != (1797, 64) or not np.array_equal(images, np.round(images)):
        raise SystemExit(f"unexpected digits images: shape {images.shape}, expected (1797, 64) integers")
    if images.min() < 0 or images.max() > 16 or labels.shape != (1797,) or set(np.unique(labels)) != set(range(10)):
        raise SystemExit("unexpected digits values: pixels must lie in 0..16 and labels in 0..9")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, images=images.astype(np.uint8), labels=labels.astype(np.uint8))
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes): images {images.shape}, labels {labels.shape}")


if __name__ == "__main__":
    main()

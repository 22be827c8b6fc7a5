"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): the default data set."""

from __future__ import annotations

import torch

from .bundle import DataBundle, Split, stratified_split

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1


def load_digits_bundle(seed: int = 0) -> DataBundle:
    """A fixed stratified split (20% test, 10% val, 70% train) decided by the seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; stretch to the full uint8 range like every other source.
    images = torch.from_numpy(digits.images).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    test_idx, val_idx, train_idx = stratified_split(labels, (TEST_FRACTION, VAL_FRACTION), seed)
    return DataBundle(
        spec="digits",
        train=Split(images[train_idx], labels[train_idx]),
        val=Split(images[val_idx], labels[val_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        class_names=[str(d) for d in range(10)],
        allow_flip=False,  # a mirrored 2 is not a 2
        pad=1,
    )

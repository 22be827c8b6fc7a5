"""Fashion-MNIST as an image folder at real size: <out>/train/<class>/*.jpg and <out>/test/<class>/*.jpg,
RGB JPEG (quality 90), upscaled (bicubic) from 28x28 to --size. The real-size data that `folder:DIR`,
`reslab predict` and `reslab serve` are measured on.

    python benchmarks/write_fashion_folder.py --out /tmp/fmnist112 --size 112 [--train-per-class N] [--test-per-class N]

Needs Debian's dataset-fashion-mnist. Train is Fashion-MNIST's 60,000 training images (reslab's train and
val splits together), test its 10,000 test images; --*-per-class keep the first N of each class.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from reslab.data import load_data


def class_folder(name: str) -> str:
    return name.replace("/", "-")  # "T-shirt/top" is not a folder name


def write_split(
    images: torch.Tensor,
    labels: torch.Tensor,
    names: list[str],
    folder: Path,
    size: int,
    per_class: int | None,
) -> int:
    counts = [0] * len(names)
    for index, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        if per_class is not None and counts[label] >= per_class:
            continue
        counts[label] += 1
        target = folder / class_folder(names[label]) / f"{index:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image[0].numpy(), mode="L").resize((size, size), Image.Resampling.BICUBIC)
        picture.convert("RGB").save(target, quality=90)
    return sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--test-per-class", type=int)
    args = parser.parse_args()
    bundle = load_data("fashion-mnist")
    names = list(bundle.class_names)
    start = time.perf_counter()
    train_images = torch.cat([bundle.train.images, bundle.val.images])
    train_labels = torch.cat([bundle.train.labels, bundle.val.labels])
    n_train = write_split(
        train_images, train_labels, names, args.out / "train", args.size, args.train_per_class
    )
    n_test = write_split(
        bundle.test.images, bundle.test.labels, names, args.out / "test", args.size, args.test_per_class
    )
    seconds = time.perf_counter() - start
    print(f"{n_train} train + {n_test} test JPEGs at {args.size} px in {args.out} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()

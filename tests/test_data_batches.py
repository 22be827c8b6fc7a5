"""Device batches: pad-and-crop, flips only where allowed, seeded, subsets, normalisation."""

from __future__ import annotations

import pytest
import torch

from reslab.data import DeviceBatches, Split
from reslab.data.batches import ERASE_SCALE, erase_random_rectangles, random_crop

MEAN = (0.25, 0.5, 0.75)
STD = (0.5, 0.25, 0.125)


def _split(n: int = 64, size: int = 8, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    # Random pixels in 1..255: every crop offset gives a different image, and padding (0) is recognisable.
    images = torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return Split(images, torch.arange(n) % 10)


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    return (x * std + mean).mul(255).round().to(torch.uint8)


def _collect(batches: DeviceBatches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _offset(original: torch.Tensor, crop: torch.Tensor, pad: int) -> tuple[int, int]:
    """The (dy, dx) of the manual crop of the zero-padded original that equals `crop`."""
    padded = torch.nn.functional.pad(original, (pad, pad, pad, pad))
    h, w = original.shape[1:]
    matches = [
        (dy, dx)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if torch.equal(padded[:, dy : dy + h, dx : dx + w], crop)
    ]
    assert len(matches) == 1, "a crop must be exactly one shifted window of the padded original"
    return matches[0]


def test_random_crop_is_a_shifted_window_of_the_padded_original() -> None:
    split = _split(n=200)
    pad = 2
    crops = random_crop(split.images, pad, torch.Generator().manual_seed(0))
    assert crops.shape == split.images.shape and crops.dtype == torch.uint8
    offsets = [_offset(split.images[i], crops[i], pad) for i in range(len(crops))]
    # Every one of the 25 offsets occurs, the identity (pad, pad) among them.
    assert set(offsets) == {(dy, dx) for dy in range(5) for dx in range(5)}
    assert random_crop(split.images, 0, None) is split.images


def test_augmented_batches_are_crops_and_flips_only_when_allowed() -> None:
    split = _split(n=64)
    for allow_flip in (False, True):
        batches = DeviceBatches(
            split, 16, MEAN, STD, shuffle=False, augment=True, pad=1, allow_flip=allow_flip,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        x, y = _collect(batches)
        assert torch.equal(y, split.labels)
        images = _unnormalise(x)
        flipped = 0
        for original, image in zip(split.images, images, strict=True):
            try:
                _offset(original, image, 1)
            except AssertionError:
                _offset(original.flip(2), image, 1)  # otherwise it must be a crop of the mirror image
                flipped += 1
        if allow_flip:
            assert 16 <= flipped <= 48  # about half
        else:
            assert flipped == 0


def test_no_augmentation_gives_the_images_back() -> None:
    split = _split(n=20)
    x, y = _collect(DeviceBatches(split, 8, MEAN, STD, augment=False, pad=4, allow_flip=True))
    assert torch.equal(_unnormalise(x), split.images) and torch.equal(y, split.labels)


def test_normalisation_uses_the_given_mean_and_std() -> None:
    split = _split(n=10)
    x, _ = _collect(DeviceBatches(split, 10, MEAN, STD))
    manual = (
        split.images.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    ) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.double(), manual, rtol=0, atol=1e-5)
    xb, _ = _collect(DeviceBatches(split, 10, MEAN, STD, dtype=torch.bfloat16))
    assert xb.dtype == torch.bfloat16
    torch.testing.assert_close(xb.double(), manual, rtol=1e-2, atol=2e-2)


def test_seeded_generator_makes_batches_repeatable() -> None:
    split = _split(n=50)

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        batches = DeviceBatches(
            split, 16, MEAN, STD, shuffle=True, augment=True, pad=2, allow_flip=True,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        return _collect(batches)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # Shuffling is a permutation: every image exactly once.
    assert sorted(a[1].tolist()) == sorted(split.labels.tolist())


def test_indices_restrict_to_a_subset() -> None:
    split = Split(_split(n=30).images, torch.arange(30))  # label = index
    subset = torch.tensor([3, 7, 11, 29, 0])
    batches = DeviceBatches(
        split, 2, MEAN, STD, shuffle=True, indices=subset, generator=torch.Generator().manual_seed(0)
    )
    assert len(batches) == 3
    x, y = _collect(batches)
    assert sorted(y.tolist()) == sorted(subset.tolist())
    assert torch.equal(_unnormalise(x), split.images[y])
    dropped = DeviceBatches(split, 2, MEAN, STD, indices=subset, drop_last=True)
    assert len(dropped) == 2 and len(_collect(dropped)[1]) == 4


def test_channels_last_and_batch_size_check() -> None:
    x, _ = next(iter(DeviceBatches(_split(n=4), 4, MEAN, STD, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        DeviceBatches(_split(n=4), 0, MEAN, STD)


def test_random_erase_zeroes_one_rectangle_in_the_chosen_images() -> None:
    n, size = 400, 16
    x = torch.randn(n, 3, size, size).abs_().add_(1)  # never 0, so erased pixels are recognisable
    out = erase_random_rectangles(x, 0.5, torch.Generator().manual_seed(0))
    erased = out == 0
    assert torch.equal(out[~erased], x[~erased])
    # The same rectangle in every channel.
    assert torch.equal(erased, erased[:, :1].expand_as(erased))
    hit = erased[:, 0].flatten(1).any(1)
    assert 0.4 < hit.float().mean() < 0.6
    for mask in erased[hit, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # A solid rectangle: its bounding box is completely erased.
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert int(mask.sum()) == len(rows) * len(cols)
        area = len(rows) * len(cols) / size**2
        # Rounding the sides and clipping to the image move the area a little off torchvision's range.
        assert ERASE_SCALE[0] / 2 <= area <= ERASE_SCALE[1] * 1.5
    assert erase_random_rectangles(x, 0.0, None) is x
    # The same draws on a channels_last batch: the same result, and the layout is kept.
    nhwc = erase_random_rectangles(
        x.contiguous(memory_format=torch.channels_last), 0.5, torch.Generator().manual_seed(0)
    )
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and torch.equal(nhwc, out)
    assert (erase_random_rectangles(x, 1.0, torch.Generator().manual_seed(3)) == 0).flatten(1).any(1).all()


def test_random_erase_in_batches_is_seeded_and_split_across_ranks_like_one_process() -> None:
    split = _split(n=48, size=8)
    common = dict(shuffle=True, augment=True, pad=1, random_erase=0.7)

    def batches(rank: int = 0, world_size: int = 1) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(5)
        it = DeviceBatches(
            split, 12, MEAN, STD, generator=generator, rank=rank, world_size=world_size, **common
        )
        return [x for x, _ in it]

    one = batches()
    assert torch.equal(torch.cat(one), torch.cat(batches()))
    assert any((x == 0).all(1).any() for x in one)  # something was erased
    shards = [batches(rank, 2) for rank in range(2)]
    for i, full in enumerate(one):
        assert torch.equal(torch.cat([shards[0][i], shards[1][i]]), full)

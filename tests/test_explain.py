"""Grad-CAM: the definition, every family, the Adebayo sanity check on a trained digits model, the CLI."""

from __future__ import annotations

import statistics

import pytest
import torch
from PIL import Image
from torch.nn import functional as F

import reslab
from reslab.classifier import load_classifier
from reslab.cli import main
from reslab.explain import explain_pixels, gradcam, randomized_copy, rank_correlation


def test_gradcam_is_the_definition_on_the_last_stage(one_thread):
    torch.manual_seed(0)
    model = reslab.create_model("resnet18", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    maps = gradcam(model, x, target=3)
    features = model.forward_features(x).detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(model.forward_head(features)[:, 3].sum(), features)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    expected = cam / cam.flatten(1).amax(1).view(-1, 1, 1)
    assert maps.shape == (2, 64, 64) and torch.allclose(maps, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("resnet18", "layer4.1.conv2"),
        ("resnet50", "layer4"),
        ("preact_resnet18", "layer4"),
        ("plain18", "layer3"),
        ("resnet20", "layer4"),  # a CIFAR net: its last stage, layer3
        ("preact_resnet164", "layer2.0"),
    ],
)
def test_every_family_gives_maps_in_unit_range(one_thread, name, layer):
    torch.manual_seed(0)
    model = reslab.create_model(name, num_classes=4)
    maps = gradcam(model, torch.randn(2, 3, 32, 32), layer=layer)
    assert maps.shape == (2, 32, 32) and float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6
    assert float(maps.flatten(1).amax(1).min()) == pytest.approx(1.0)


def test_maps_follow_the_learned_weights_not_the_architecture(digits_run, digit_folder, one_thread):
    # Adebayo et al. 2018: randomising the weights must change the maps (rank correlation near 0), while
    # the same weights give the same maps (correlation 1).
    classifier = load_classifier(digits_run, device="cpu", precision="fp32", fast=False)
    pixels = torch.stack([classifier.transform.read(p) for p in digit_folder[1]])
    probs, maps = explain_pixels(classifier, pixels)
    again = gradcam(classifier.model, classifier.normalised(pixels), probs.argmax(1))
    assert statistics.fmean(rank_correlation(maps, again)) == pytest.approx(1.0)
    random_maps = gradcam(randomized_copy(classifier.model), classifier.normalised(pixels), probs.argmax(1))
    rho = statistics.fmean(rank_correlation(maps, random_maps))
    assert rho < 0.3, rho
    other = gradcam(classifier.model, classifier.normalised(pixels), (probs.argmax(1) + 1) % 10)
    assert not torch.allclose(other, maps)  # another class has its evidence elsewhere


def test_explain_cli_writes_overlays_and_the_sanity_check(digits_run, digit_folder, tmp_path, capsys):
    paths = digit_folder[1][:3]
    out = tmp_path / "maps"
    argv = [
        "explain",
        str(digits_run),
        *map(str, paths),
        "--out",
        str(out),
        "--sanity-check",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    written = sorted(out.glob("*.gradcam.png"))
    assert [p.name for p in written] == sorted(f"{p.stem}.gradcam.png" for p in paths)
    with Image.open(written[0]) as image:
        assert image.mode == "RGB" and min(image.size) >= 224  # 8x8 digits enlarged to be seen
    assert len(lines) == 4 and lines[-1].startswith(
        "sanity check: rank correlation with random weights, mean"
    )
    assert main(["explain", str(digits_run), str(paths[0]), "--out", str(out), "--target", "7"]) == 0
    assert capsys.readouterr().out.startswith(f"{paths[0]}: 7 (")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            ["--layer", "layer9"],
            "--layer 'layer9' is not a module of the model; name one such as layer1, layer2, layer3",
        ),
        (["--target", "cat"], "--target 'cat' is neither a class name nor an index below 10"),
    ],
)
def test_explain_bad_options_are_one_line(digits_run, digit_folder, tmp_path, capsys, extra, words):
    argv = ["explain", str(digits_run), str(digit_folder[1][0]), "--out", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not list(tmp_path.glob("*.png"))

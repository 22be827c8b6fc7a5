"""Backbones: forward_features / forward_head / reset_classifier, features_only stage outputs (timm's
conventions), a feature pyramid on them, and `reslab features` feeding a linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import reslab
from reslab.cli import main
from reslab.data import load_data
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.models.features import ResNetFeatures

# (name, input size): every family (CIFAR/ImageNet, post/pre-activation, residual/plain), inputs small.
FAMILIES = [
    ("resnet20", 16),
    ("plain20", 16),
    ("preact_resnet164", 8),
    ("plain_preact_resnet164", 8),
    ("resnet18", 64),
    ("resnet50", 64),
    ("preact_resnet18", 64),
    ("plain_preact_resnet18", 64),
]


def _model(name: str, **kw):
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    # Non-trivial BN statistics, so a missing or extra BN shows in the numbers.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize(("name", "size"), FAMILIES)
def test_forward_is_head_of_features_and_classifier_resets(one_thread, name, size):
    model = _model(name)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        pooled = model.forward_head(feats, pre_logits=True)
        assert feats.shape[1] == model.num_features and feats.dim() == 4
        torch.testing.assert_close(logits, model.forward_head(feats))
        torch.testing.assert_close(pooled, feats.mean((2, 3)))
        torch.testing.assert_close(logits, model.get_classifier()(pooled))
        if model.final_bn is not None:  # pre-activation: features end with the final BN-ReLU
            assert (feats >= 0).all()
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        torch.testing.assert_close(model(x), pooled)
        assert not any(k.startswith("fc.") for k in model.state_dict())
        model.reset_classifier(7)
        assert model(x).shape == (2, 7) and model.config.num_classes == 7


def test_num_classes_zero_gives_pooled_features_and_keys_stay_torchvisions(one_thread):
    net = create_model("resnet50", num_classes=0).eval()
    assert isinstance(net.fc, nn.Identity) and net.num_features == 2048
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 2048)
    assert create_model("resnet20", num_classes=0)(torch.randn(2, 3, 8, 8)).shape == (2, 64)
    tv = torchvision.models.resnet18(weights=None)
    assert list(create_model("resnet18").state_dict()) == list(tv.state_dict())
    with pytest.raises(ReslabError, match="num_classes") as info:
        create_model("resnet20", num_classes=-1)
    assert "num_classes" in info.value.params
    with pytest.raises(ReslabError, match="num_classes"):
        create_model("resnet20").reset_classifier(-2)


def test_headless_and_feature_models_script_and_export(one_thread):
    x = torch.randn(2, 3, 16, 16)
    headless = create_model("resnet20", num_classes=0).eval()
    scripted = torch.jit.script(headless)
    torch.testing.assert_close(scripted(x), headless(x))
    torch.testing.assert_close(scripted.forward_head(scripted.forward_features(x), True), headless(x))
    exported = torch.export.export(headless, (x,))
    torch.testing.assert_close(exported.module()(x), headless(x))
    feats = create_model("preact_resnet11", features_only=True, out_indices=(0, 2, 3)).eval()
    scripted_feats = torch.jit.script(feats)
    for a, b in zip(scripted_feats(x), feats(x), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("name", "size"), FAMILIES)
def test_features_only_returns_stage_outputs(one_thread, name, size):
    model = _model(name)
    cifar = model.config.family == "cifar"
    stages = [model.layer1, model.layer2, model.layer3] + ([] if cifar else [model.layer4])
    backbone = ResNetFeatures(model)  # default: every index, 0 (stem) .. number of stages
    assert backbone.out_indices == tuple(range(len(stages) + 1))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        outs = backbone(x)
        # The same tensors by hand: the stem (before the max-pool), then each stage's raw output.
        h = model.conv1(x)
        if model.bn1 is not None:
            h = model.relu(model.bn1(h))
        expected = [h]
        if model.maxpool is not None:
            h = model.maxpool(h)
        for stage in stages:
            h = stage(h)
            expected.append(h)
        for got, want in zip(outs, expected, strict=True):
            torch.testing.assert_close(got, want)
        # timm's choice for pre-activation nets: the last stage output is the raw residual sum;
        # final_bn + ReLU belong to forward_features only.
        final = model.forward_features(x)
        if model.final_bn is None:
            torch.testing.assert_close(outs[-1], final)
        else:
            torch.testing.assert_close(model.relu(model.final_bn(outs[-1])), final)
            assert (outs[-1] < 0).any()
    info = backbone.feature_info
    assert len(info) == len(outs)
    assert info.channels() == [o.shape[1] for o in outs]
    assert info.reduction() == [size // o.shape[-1] for o in outs]
    assert info[len(outs) - 1]["module"] == f"layer{len(stages)}"
    assert info[0]["module"] == ("conv1" if model.bn1 is None else "relu")
    assert info.reduction() == ([1, 1, 2, 4] if cifar else [2, 4, 8, 16, 32])
    assert all({"num_chs", "reduction", "module"} <= set(d) for d in info.get_dicts())
    # Same modules, same names: the backbone's keys are the net's, minus what it does not run.
    keys = set(model.state_dict())
    assert set(backbone.state_dict()) <= keys
    assert {k for k in keys if not k.startswith(("fc.", "final_bn."))} == set(backbone.state_dict())


def test_out_indices_select_and_trim(one_thread):
    net = create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == net.feature_info.channels() == [64, 128, 256, 512]
    assert net.feature_info.reduction() == [4, 8, 16, 32]
    early = create_model("resnet50", features_only=True, out_indices=(2, 0)).eval()
    assert early.out_indices == (0, 2) and early.layer3 is None and early.layer4 is None
    assert [o.shape[1] for o in early(torch.randn(1, 3, 64, 64))] == [64, 512]
    assert "layer3.0.conv1.weight" not in early.state_dict()


@pytest.mark.parametrize(
    ("name", "indices", "valid"),
    [
        ("resnet20", (1, 4), "0..3"),
        ("resnet18", (5,), "0..4"),
        ("plain20", (-1,), "0..3"),
        ("resnet20", (), "0..3"),
    ],
)
def test_out_of_range_index_is_one_error(name, indices, valid):
    with pytest.raises(ReslabError) as info:
        create_model(name, features_only=True, out_indices=indices)
    assert "out_indices" in str(info.value) and valid in str(info.value)
    assert info.value.params == ("out_indices",)


def test_out_indices_need_features_only():
    with pytest.raises(ReslabError, match="features_only"):
        create_model("resnet20", out_indices=(1,))


def test_feature_pyramid_runs_on_resnet50_features(one_thread):
    backbone = create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    fpn = torchvision.ops.FeaturePyramidNetwork(backbone.feature_info.channels(), out_channels=64).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 224, 224))
        pyramid = fpn({f"p{i}": f for i, f in enumerate(feats)})
    assert [tuple(p.shape) for p in pyramid.values()] == [
        (1, 64, 224 // r, 224 // r) for r in backbone.feature_info.reduction()
    ]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("featrun") / "run"
    reslab.train(
        "resnet8",
        "digits",
        epochs=1,
        batch_size=64,
        precision="fp32",
        device="cpu",
        quiet=True,
        threads=1,
        seed=0,
        out=out,
    )
    return out


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """240 digits test images as PNGs in nested folders, and their labels by file name."""
    folder = tmp_path_factory.mktemp("digits")
    test = load_data("digits").test
    labels = {}
    for i in range(240):
        sub = folder / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        path = sub / f"digit{i:03d}.png"
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(path)
        labels[str(path)] = int(test.labels[i])
    (folder / "README.txt").write_text("not an image")  # skipped: not an image extension
    return folder, labels


def test_features_cli_feeds_a_linear_probe(one_thread, digits_run, digit_folder, tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression

    folder, labels = digit_folder
    out = tmp_path / "feats.npz"
    assert main(["features", str(digits_run / "best.pt"), str(folder), "--out", str(out), "--device", "cpu",
                 "--batch-size", "50"]) == 0  # fmt: skip
    assert "240 image(s)" in capsys.readouterr().out
    data = np.load(out)  # no pickle needed
    feats, paths = data["features"], list(data["paths"])
    assert feats.dtype == np.float32 and feats.shape == (240, 64) and np.isfinite(feats).all()
    assert sorted(paths) == sorted(labels) and paths == sorted(paths)
    y = np.array([labels[p] for p in paths])
    probe = LogisticRegression(max_iter=2000).fit(feats[:160], y[:160])
    accuracy = probe.score(feats[160:], y[160:])
    print("linear probe accuracy", accuracy)
    assert accuracy > 0.5, accuracy  # chance is 0.1
    # The library function gives the same numbers, one file or a folder alike.
    from reslab.features import extract_features

    one = extract_features(digits_run, [paths[3]], device="cpu")
    np.testing.assert_allclose(one["features"][0], feats[3], rtol=1e-4, atol=1e-5)
    assert one["num_features"] == 64 and one["paths"] == [paths[3]]


def test_features_cli_bad_input_is_one_line(digits_run, digit_folder, tmp_path, capsys):
    folder, labels = digit_folder
    out = str(tmp_path / "f.npz")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "does not exist": ["features", str(tmp_path / "missing.pt"), str(folder), "--out", out],
        "no images found": ["features", str(digits_run), str(empty), "--out", out],
        "broken.png": ["features", str(digits_run), str(broken), "--out", out],
        "nothing.png": ["features", str(digits_run), str(tmp_path / "nothing.png"), "--out", out],
        "--batch-size": ["features", str(digits_run), str(folder), "--out", out, "--batch-size", "0"],
    }
    for needle, argv in cases.items():
        assert main(argv) == 2, needle
        err = capsys.readouterr().err.strip()
        assert err.startswith("reslab features: error:") and "\n" not in err and needle in err, err
    assert not (tmp_path / "f.npz").exists()


def test_features_help_names_both_sources(capsys):
    with pytest.raises(SystemExit):
        main(["features", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "CHECKPOINT_OR_MODEL" in text and "--weights" in text


def test_a_weights_file_loads_into_a_headless_backbone(tmp_path):
    torch.manual_seed(0)
    full = torchvision.models.resnet18().eval()
    torch.save(full.state_dict(), tmp_path / "r18.pth")
    backbone = reslab.create_model("resnet18", weights=tmp_path / "r18.pth", num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = torch.flatten(full.avgpool(full.layer4(full.layer3(full.layer2(full.layer1(
            full.maxpool(full.relu(full.bn1(full.conv1(x))))))))), 1)  # fmt: skip
        assert torch.allclose(backbone(x), pooled, atol=1e-6)

"""Pretrained weights by name (reslab.pretrained), offline: a temporary TORCH_HOME holds a state dict made
here under the file name torchvision's registry expects, and the network is unreachable throughout.

Why a made-up file passes `check_hash=True`: torch.hub.load_state_dict_from_url checks the sha256 prefix
in the file name only while downloading (torch/hub.py: `if not os.path.exists(cached_file): ...
download_url_to_file(url, cached_file, hash_prefix, ...)`); a file already in <hub dir>/checkpoints/ is
loaded as it is. That is also what lets an air-gapped user copy the real file there.
"""

import json
from urllib.error import URLError

import pytest
import torch
import torchvision
from PIL import Image

import reslab
from reslab.cli import main
from reslab.errors import ReslabError
from reslab.weights import load_weights

R18 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
R18_FILE = R18.url.rsplit("/", 1)[-1]  # resnet18-f37072fd.pth


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """An empty torch.hub cache of this test's own, and no network: any download fails as offline."""

    def unreachable(*args, **kwargs):
        raise URLError("[Errno 101] Network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # as if set_dir was never called: TORCH_HOME rules
    monkeypatch.setattr(torch.hub, "urlopen", unreachable)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def cached(offline):
    """resnet18's IMAGENET1K_V1 file in the cache: a seeded random torchvision resnet18's state dict."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    offline.mkdir(parents=True)
    torch.save(state, offline / R18_FILE)
    return state


def test_named_weights_give_torchvisions_outputs(cached):
    model = reslab.create_model("resnet18", weights="IMAGENET1K_V1").eval()
    reference = torchvision.models.resnet18(weights="IMAGENET1K_V1").eval()  # the same cached file
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    cfg = model.pretrained_cfg
    assert cfg["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert cfg["std"] == pytest.approx((0.229, 0.224, 0.225))
    assert (cfg["resize_size"], cfg["crop_size"], cfg["input_size"]) == (256, 224, (3, 224, 224))
    assert cfg["class_names"] == R18.meta["categories"] and len(cfg["class_names"]) == 1000


@pytest.mark.parametrize(
    "how",
    [{"weights": "DEFAULT"}, {"pretrained": True}, {"weights": "ResNet18_Weights.IMAGENET1K_V1"},
     {"weights": "imagenet1k_v1"}, {"weights": R18}],
)  # fmt: skip
def test_default_and_pretrained_true_resolve(cached, how):
    model = reslab.create_model("resnet18", **how)
    assert model.pretrained_cfg["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(model.state_dict()["fc.weight"], cached["fc.weight"])


def test_a_bad_name_lists_the_valid_ones():
    with pytest.raises(ReslabError) as info:
        reslab.create_model("resnet50", weights="IMAGENET1K_V3")
    message = str(info.value)
    assert "'IMAGENET1K_V3'" in message and "resnet50" in message and "\n" not in message
    assert "IMAGENET1K_V1, IMAGENET1K_V2 or DEFAULT (= IMAGENET1K_V2)" in message
    with pytest.raises(ReslabError, match="IMAGENET1K_V1 or DEFAULT"):
        reslab.create_model("resnet18", weights="ResNet50_Weights.IMAGENET1K_V2")  # another model's


def test_models_torchvision_has_no_weights_for_are_one_clear_line():
    with pytest.raises(ReslabError, match=r"no pretrained checkpoint for resnet20 \(only for resnet18"):
        reslab.create_model("resnet20", weights="DEFAULT")
    with pytest.raises(ReslabError, match="not torchvision's resnet50"):
        reslab.create_model("resnet50_v1", weights="DEFAULT")  # same keys and shapes, another network
    with pytest.raises(ReslabError, match="not both"):
        reslab.create_model("resnet18", weights="IMAGENET1K_V1", pretrained=True)


def test_paths_are_still_paths(tmp_path):
    with pytest.raises(ReslabError, match="do not exist"):
        reslab.create_model("resnet18", weights=str(tmp_path / "missing.pth"))


def test_offline_names_the_file_to_place_in_the_cache(offline, capsys, tmp_path):
    target = offline / R18_FILE
    with pytest.raises(ReslabError) as info:
        reslab.create_model("resnet18", weights="DEFAULT")
    message = str(info.value)
    assert "\n" not in message and "Network is unreachable" in message
    assert R18_FILE in message and repr(str(target)) in message
    assert torch.hub.get_dir() == str(offline.parent) and not target.exists()
    image = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(image)
    assert main(["predict", "--model", "resnet18", "--weights", "DEFAULT", str(image), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("reslab predict: error: cannot download") and str(target) in err


def test_num_classes_replaces_the_classifier_and_keeps_the_rest(cached):
    torch.manual_seed(3)
    model = reslab.create_model("resnet18", weights="IMAGENET1K_V1", num_classes=5)
    state = model.state_dict()
    assert state["fc.weight"].shape == (5, 512) and state["fc.bias"].shape == (5,)
    assert all(torch.equal(state[k], v) for k, v in cached.items() if not k.startswith("fc."))
    assert model.pretrained_cfg["class_names"] is None and model.pretrained_cfg["num_classes"] == 5
    backbone = reslab.create_model("resnet18", weights="IMAGENET1K_V1", num_classes=0).eval()
    assert "fc.weight" not in backbone.state_dict()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_in_chans_adapts_the_first_convolution(cached):
    gray = reslab.create_model("resnet18", weights="IMAGENET1K_V1", in_chans=1)
    rgb = cached["conv1.weight"]
    assert torch.allclose(gray.conv1.weight, rgb.sum(dim=1, keepdim=True))
    assert gray.pretrained_cfg["input_size"] == (1, 224, 224) and len(gray.pretrained_cfg["mean"]) == 1
    four = reslab.create_model("resnet18", weights="IMAGENET1K_V1", in_chans=4)
    expected = torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4  # timm: repeat, keep in_chans, scale 3/in_chans
    assert torch.allclose(four.conv1.weight, expected)


def test_training_setup_loads_a_name_against_the_models_architecture(cached):
    # What `reslab train --weights IMAGENET1K_V1` does in training/setup.py on 1-channel, 10-class data.
    model = reslab.create_model("resnet18", in_chans=1, num_classes=10)
    assert load_weights(model, "IMAGENET1K_V1", new_classifier=True) == ["fc.weight", "fc.bias"]
    assert torch.equal(model.layer4[1].conv2.weight, cached["layer4.1.conv2.weight"])
    with pytest.raises(ReslabError, match="no pretrained checkpoint for resnet8"):
        load_weights(reslab.create_model("resnet8"), "IMAGENET1K_V1", new_classifier=True)


def test_predict_with_model_and_weights_prints_imagenet_classes(cached, tmp_path, capsys):
    image = tmp_path / "wide.png"
    pixels = torch.randint(0, 256, (30, 50, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(image)
    categories = R18.meta["categories"]
    argv = ["predict", "--model", "resnet18", "--weights", "DEFAULT", str(image), "--device", "cpu"]
    assert main([*argv, "--json", "--topk", "3", "--precision", "fp32", "--no-fast"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert [t["class"] for t in result["top"]] == [categories[t["index"]] for t in result["top"]]
    # The weights' own eval transform (torchvision's, on the same RGB image) ranks the same classes.
    reference = torchvision.models.resnet18(weights=R18).eval()
    with torch.no_grad():
        probs = reference(R18.transforms()(Image.open(image).convert("RGB"))[None]).softmax(1)[0]
    top = probs.topk(3)
    assert [t["index"] for t in result["top"]] == top.indices.tolist()
    assert [t["probability"] for t in result["top"]] == pytest.approx(top.values.tolist(), abs=2e-3)
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(image)) and categories[result["top"][0]["index"]] in line


@pytest.mark.parametrize(
    "name", ["resnet18.IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", "resnet18.DEFAULT"]
)
def test_predict_takes_a_weights_name_in_place_of_a_checkpoint(cached, tmp_path, capsys, name):
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(image)
    options = [str(image), "--json", "--device", "cpu", "--precision", "fp32", "--no-fast"]
    assert main(["predict", "--model", "resnet18", "--weights", "IMAGENET1K_V1", *options]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["predict", name, *options]) == 0
    assert json.loads(capsys.readouterr().out) == expected


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--model", "resnet18", "x.png"], "needs both --model and --weights"),
        (["--weights", "DEFAULT", "x.png"], "needs both --model and --weights"),
        (["--model", "resnet18", "--weights", "DEFAULT", "run/best.pt", "x.png"], "not both"),
        (["only.pt"], "a checkpoint and at least one image"),
        (["--model", "resnet18", "--weights", "IMAGENET1K_V9", "x.png"], "--weights 'IMAGENET1K_V9'"),
        (["--model", "resnet20", "--weights", "DEFAULT", "x.png"], "give --weights a file"),
    ],
)
def test_predict_refuses_bad_combinations_in_one_line(capsys, argv, words):
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("reslab predict: error: "), err
    assert words in err, err


def test_train_starts_from_weights_by_name(offline, capsys, tmp_path):
    argv = ["train", "--model", "resnet18", "--weights", "IMAGENET1K_V1", "--epochs", "1"]
    argv += ["--batch-size", "256", "--device", "cpu", "--precision", "fp32", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "offline")]) == 2  # digits: 1 channel, 10 classes
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(offline / R18_FILE) in err, err
    offline.mkdir(parents=True, exist_ok=True)  # torch.hub made it for the failed download
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), offline / R18_FILE)
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["weights"] == "IMAGENET1K_V1"
    # The weights' metadata travels into the run config (and so into every checkpoint).
    pretrained = config["model"]["pretrained"]
    assert pretrained["weights"] == "ResNet18_Weights.IMAGENET1K_V1" and pretrained["crop_size"] == 224
    assert "class_names" not in pretrained
    from reslab.checkpoint import load_checkpoint, run_config_of

    assert run_config_of(load_checkpoint(tmp_path / "run" / "best.pt")).model.pretrained == pretrained
    # Inputs are normalised as the weights expect (ImageNet's statistics, averaged for 1 channel), not
    # with the digits' own; eval and predict read them from the checkpoint.
    imagenet_grey = (sum(R18.transforms().mean) / 3, sum(R18.transforms().std) / 3)
    info = load_checkpoint(tmp_path / "run" / "best.pt")["data"]
    assert (info["mean"][0], info["std"][0]) == pytest.approx(imagenet_grey)
    assert config["data"]["info"]["mean"] == info["mean"]


def test_features_of_pretrained_weights_by_name(cached, tmp_path, capsys):
    import numpy as np

    for i, colour in enumerate([(200, 30, 30), (20, 160, 40)]):
        Image.new("RGB", (80, 60), colour).save(tmp_path / f"{i}.png")
    out = tmp_path / "f.npz"
    assert main(["features", "resnet18", str(tmp_path), "--weights", "IMAGENET1K_V1", "--out", str(out)]) == 0
    saved = np.load(out)
    assert saved["features"].shape == (2, 512) and [p.rsplit("/", 1)[-1] for p in saved["paths"]] == [
        "0.png",
        "1.png",
    ]
    # The same numbers as torchvision's own model and eval transform (resize 256, crop 224, its mean/std).
    reference = torchvision.models.resnet18(weights="IMAGENET1K_V1").eval()
    reference.fc = torch.nn.Identity()
    transform = R18.transforms()
    x = torch.stack([transform(Image.open(tmp_path / f"{i}.png").convert("RGB")) for i in range(2)])
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.abs(saved["features"] - expected).max() < 2e-2 * np.abs(expected).max()
    capsys.readouterr()
    assert main(["features", "resnet18", str(tmp_path), "--weights", "nope.pth", "--out", str(out)]) == 2
    assert "is a file; give it as checkpoint" in capsys.readouterr().err

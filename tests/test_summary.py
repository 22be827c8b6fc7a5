"""Params and MACs against the papers' and torchvision's numbers (../shared/REFERENCE.md)."""

import json

import pytest
import torch

from reslab.cli import main
from reslab.models import create_model, list_models, resolve_config
from reslab.models.summary import count_macs, count_params, describe

MACS_V15 = {18: 1.814e9, 34: 3.664e9, 50: 4.089e9, 101: 7.801e9, 152: 11.514e9}
MACS_V1 = {50: 3.858e9, 101: 7.570e9, 152: 11.282e9}
# README's CIFAR-10 table (32x32 input), column "MACs": the exact counts, and the README's printed value.
CIFAR_MACS = {
    "resnet20": (40_551_040, "40.6 M"),
    "resnet32": (68_862_592, "68.9 M"),
    "resnet44": (97_174_144, "97.2 M"),
    "resnet56": (125_485_696, "125.5 M"),
    "resnet110": (252_887_680, "252.9 M"),
    "resnet1202": (2_829_238_912, "2829.2 M"),
    "preact_resnet164": (247_646_720, "247.6 M"),
    "preact_resnet1001": (1_490_995_712, "1491.0 M"),
}


@pytest.mark.parametrize("depth", sorted(MACS_V15))
def test_imagenet_macs_v15_within_one_percent(depth):
    assert describe(resolve_config(f"resnet{depth}"))["macs"] == pytest.approx(MACS_V15[depth], rel=0.01)


@pytest.mark.parametrize("depth", sorted(MACS_V1))
def test_imagenet_macs_v1_within_one_percent(depth):
    assert describe(resolve_config(f"resnet{depth}_v1"))["macs"] == pytest.approx(MACS_V1[depth], rel=0.01)


@pytest.mark.parametrize("name", ["resnet56", "resnet50", "preact_resnet164", "plain34", "resnet110"])
def test_describe_shortcut_equals_full_count(name):
    with torch.device("meta"):
        model = create_model(name)
    row = describe(resolve_config(name))
    assert row["params"] == count_params(model)
    assert row["macs"] == count_macs(model)


@pytest.mark.parametrize("name", sorted(CIFAR_MACS))
def test_cifar_macs_table(name):
    exact, printed = CIFAR_MACS[name]
    macs = describe(resolve_config(name))["macs"]
    assert macs == exact
    assert f"{macs / 1e6:.1f} M" == printed


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_cifar_option_a_macs_follow_the_closed_form(depth):
    """An independent count of the 6n+2 nets (option A shortcuts cost nothing): the 3->16 stem at 32x32;
    6n 3x3 convolutions that each cost 32*32*16*16*9 (each later stage halves the side and doubles the
    channels, so the cost stays), except the first convolution of stages 2 and 3, which sees half as many
    input channels (half the cost); and the 64->10 classifier."""
    n = (depth - 2) // 6
    per_conv = 32 * 32 * 16 * 16 * 9  # = 16*16*32*32*9 = 8*8*64*64*9
    expected = 32 * 32 * 16 * 3 * 9 + 6 * n * per_conv - 2 * (per_conv // 2) + 64 * 10
    assert describe(resolve_config(f"resnet{depth}"))["macs"] == expected
    assert CIFAR_MACS[f"resnet{depth}"][0] == expected


def test_summary_of_resnet20_matches_the_readme(capsys):
    assert main(["summary", "resnet20", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {layer["name"]: layer for layer in data["layers"]}
    assert rows["conv1"]["macs"] == 442_368 and rows["conv1"]["output_shape"] == [1, 16, 32, 32]
    assert rows["layer1.0"]["macs"] == 4_718_592 and rows["layer1.0"]["params"] == 4_672
    assert rows["layer2.0"]["macs"] == 3_538_944 and rows["layer2.0"]["output_shape"] == [1, 32, 16, 16]
    assert data["params"] == 269_722 and data["macs"] == 40_551_040


def test_macs_scale_with_input_size():
    model = create_model("resnet20")
    assert count_macs(model, (64, 64)) == pytest.approx(4 * count_macs(model), rel=0.001)


def test_models_json_lists_every_name_with_keys(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    assert set(rows[0]) == {"name", "family", "depth", "unit", "shortcut", "params", "macs"}
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet1202"]["params"] == 19_421_274
    assert by_name["preact_resnet1001"]["params"] == 10_327_706


def test_models_table_prints(capsys):
    assert main(["models", "resnet1*"]) == 0
    out = capsys.readouterr().out
    assert "resnet110" in out and "1,727,962" in out and "11.514 G" in out


def test_summary_json_per_layer_and_totals(capsys):
    assert (
        main(
            [
                "summary",
                "resnet18",
                "--input-size",
                "64",
                "64",
                "--in-chans",
                "1",
                "--num-classes",
                "5",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    names = [layer["name"] for layer in data["layers"]]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"] and "layer4.1" in names and names[-1] == "fc"
    assert data["layers"][-1]["output_shape"] == [1, 5]
    assert data["params"] == sum(layer["params"] for layer in data["layers"])
    assert data["layers"][0]["params"] == 64 * 1 * 7 * 7
    # The total MACs, counted by hand (the CLI's total is the sum of its rows, so compare with an
    # independent count): 64x64 input, stem 7x7/2 -> 32x32, max-pool -> 16x16, then stages at 16, 8, 4, 2.
    macs = 32 * 32 * 64 * 1 * 49
    side, width = 16, 64
    for stage, out in enumerate((64, 128, 256, 512)):
        if stage:
            side //= 2
            macs += side * side * out * width * 9 + side * side * out * width  # strided 3x3 + 1x1 projection
        else:
            macs += side * side * out * width * 9
        macs += 3 * side * side * out * out * 9  # the other three 3x3 convolutions of the stage
        width = out
    macs += 512 * 5
    assert data["macs"] == macs
    assert data["layers"][0]["macs"] == 32 * 32 * 64 * 49


def test_summary_unknown_model_exits_2(capsys):
    assert main(["summary", "resnet21"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "6n+2" in err

"""Params and MACs against the papers' and torchvision's numbers (../shared/REFERENCE.md)."""

import json

import pytest
import torch

from reslab.cli import main
from reslab.models import create_model, list_models, resolve_config
from reslab.models.summary import count_macs, count_params, describe

MACS_V15 = {18: 1.814e9, 34: 3.664e9, 50: 4.089e9, 101: 7.801e9, 152: 11.514e9}
MACS_V1 = {50: 3.858e9, 101: 7.570e9, 152: 11.282e9}


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
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"])
    assert data["layers"][0]["params"] == 64 * 1 * 7 * 7


def test_summary_unknown_model_exits_2(capsys):
    assert main(["summary", "resnet21"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "6n+2" in err

"""Gradient flow: the statistic against a hand computation, BN removal, and `reslab gradients`."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from reslab.analysis.gradients import (
    first_last_ratio,
    gradient_norms,
    gradients_at_init,
    init_model,
)
from reslab.cli import main
from reslab.data import load_data
from reslab.plots import plot_gradients

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHTS = (0.7, -1.3, 0.9)  # the three units' scalar (1x1 conv) weights
HEAD_W = np.array([1.5, -0.5])
HEAD_B = np.array([0.1, -0.2])


class ScalarUnit(nn.Module):
    """h = relu(w * x) (+ x if residual): a one-channel 1x1 conv, so every derivative is a scalar."""

    def __init__(self, w: float, residual: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.conv.weight.fill_(w)
        self.residual = residual

    def forward(self, x):
        out = torch.relu(self.conv(x))
        return out + x if self.residual else out


class ThreeUnitNet(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(*(ScalarUnit(w, residual) for w in WEIGHTS))
        self.fc = nn.Linear(1, 2, dtype=torch.float64)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(HEAD_W).view(2, 1))
            self.fc.bias.copy_(torch.tensor(HEAD_B))

    def units(self):
        return list(self.body)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def hand_norms(batches, residual: bool):
    """Chain rule by hand, in numpy: dL/dh_i and dL/dw_i for L = mean cross-entropy."""
    r = 1.0 if residual else 0.0
    unit_sums, weight_sums = np.zeros(3), np.zeros(3)
    for x, y in batches:
        h = [x.numpy().reshape(-1).astype(np.float64)]
        for w in WEIGHTS:
            h.append(np.maximum(w * h[-1], 0) + r * h[-1])
        z = np.outer(h[3], HEAD_W) + HEAD_B
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dz = (p - np.eye(2)[y.numpy()]) / len(y)
        g = dz @ HEAD_W  # dL/dh3 per example
        grads_h, grads_w = [None] * 3, [None] * 3
        for i in (2, 1, 0):
            grads_h[i] = g
            active = (WEIGHTS[i] * h[i] > 0).astype(np.float64)
            grads_w[i] = np.sum(g * active * h[i])
            g = g * (WEIGHTS[i] * active + r)
        unit_sums += [np.linalg.norm(gh) for gh in grads_h]
        weight_sums += [abs(gw) for gw in grads_w]
    return unit_sums / len(batches), weight_sums / len(batches)


@pytest.mark.parametrize("residual", [False, True])
def test_three_unit_network_matches_hand_computation(residual):
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(6, 1, 1, 1, generator=gen), torch.randint(0, 2, (6,), generator=gen)) for _ in range(2)
    ]
    net = ThreeUnitNet(residual)
    got = gradient_norms(net, net.units(), [(x.double(), y) for x, y in batches])
    units, weights = hand_norms(batches, residual)
    np.testing.assert_allclose(got["unit_grad_norm"], units, rtol=1e-12)
    np.testing.assert_allclose(got["weight_grad_norm"], weights, rtol=1e-12)
    assert first_last_ratio(got["unit_grad_norm"]) == pytest.approx(units[0] / units[-1])


def test_remove_batchnorm_keeps_a_sane_scale():
    bundle = load_data("digits")
    x = torch.randn(32, 1, 8, 8)
    # The residual net's branches are scaled down so 9 additions do not explode the signal; the plain net
    # keeps plain He init, whose signal shrinks on 8x8 maps (zero padding) but stays alive.
    for name, low, high in (("plain20", 1e-5, 10), ("resnet20", 0.05, 20)):
        model = init_model(name, bundle, seed=0, bn=False)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert low < model.forward_features(x).std().item() < high
    zero = init_model("resnet20", bundle, seed=0, bn=False, zero_init_residual=True)
    assert all(unit.conv2.weight.abs().sum() == 0 for unit in zero.units())
    with pytest.raises(Exception, match="plain net"):
        init_model("plain20", bundle, seed=0, zero_init_residual=True)


def test_bn_and_depth_change_the_gradient_profile():
    """The README's claim at a small scale: with BN, plain-56's gradient grows toward the input far more
    than resnet-56's; without BN it vanishes toward the input in plain-56 but not in resnet-56."""
    bundle = load_data("digits")
    res = gradients_at_init(["plain56", "resnet56"], bundle, num_batches=1, batch_size=64)["models"]
    assert res["plain56"]["first_last_ratio"] > 100
    assert res["plain56"]["first_last_ratio"] > 20 * res["resnet56"]["first_last_ratio"]
    assert res["plain56-nobn"]["first_last_ratio"] < 1e-3
    assert res["resnet56-nobn"]["first_last_ratio"] > 0.1


def test_gradients_command_files_keys_and_plot(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["gradients", "--models", "plain8", "resnet8", "--batches", "2", "--batch-size", "16"]
    assert main([*argv, "--out", str(out), "--zero-init-residual", "--seeds", "2"]) == 0
    data = json.loads((out / "gradients.json").read_text())
    assert (out / "gradients.png").stat().st_size > 10_000
    assert set(data["models"]) == {
        "plain8",
        "resnet8",
        "resnet8-zeroinit",
        "plain8-nobn",
        "resnet8-nobn",
        "resnet8-nobn-zeroinit",
    }
    for entry in data["models"].values():
        assert len(entry["unit_grad_norm"]) == 3  # resnet8: three units
        assert len(entry["weight_grad_norm"]) == 6
        assert entry["first_last_ratio"] == pytest.approx(
            entry["unit_grad_norm"][0] / entry["unit_grad_norm"][-1]
        )
        assert len(entry["first_last_ratio_per_seed"]) == 2
    assert "first/last" in capsys.readouterr().out

    fig = plot_gradients(data)
    plotted = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            plotted.setdefault(ax.get_title(), {})[line.get_label().split(" ")[0]] = list(line.get_ydata())
    with_bn = plotted["‖∂L/∂(unit output)‖, with BN"]
    assert with_bn["plain8"] == data["models"]["plain8"]["unit_grad_norm"]
    assert (
        plotted["‖∂L/∂W‖ of each conv, without BN"]["resnet8-nobn"]
        == (data["models"]["resnet8-nobn"]["weight_grad_norm"])
    )
    assert fig.axes[0].get_yscale() == "log"

    (out / "gradients.png").unlink()
    assert main(["gradients", "--replot", "--out", str(out)]) == 0
    assert (out / "gradients.png").is_file()
    assert json.loads((out / "gradients.json").read_text()) == data


def test_gradients_no_bn_only_and_bad_input(tmp_path, capsys):
    out = tmp_path / "nobn"
    assert main(["gradients", "--models", "plain8", "--no-bn", "--batches", "1", "--out", str(out)]) == 0
    data = json.loads((out / "gradients.json").read_text())
    assert list(data["models"]) == ["plain8-nobn"]
    assert not math.isnan(data["models"]["plain8-nobn"]["first_last_ratio"])
    capsys.readouterr()
    assert main(["gradients", "--replot", "--out", str(tmp_path / "none")]) == 2
    assert "run the experiment first" in capsys.readouterr().err
    assert main(["gradients", "--models", "nonsense9", "--out", str(out)]) == 2
    assert main(["gradients", "--at", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2

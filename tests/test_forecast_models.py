"""Forecast networks: periodic padding, the paper's size, the plain twin, grid checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reslab.errors import ReslabError
from reslab.forecast.models import Forecaster, NetConfig, PeriodicConv2d, build_net, check_grid


def test_periodic_padding_equals_wrapping_by_hand() -> None:
    torch.manual_seed(0)
    conv = PeriodicConv2d(2, 3, 5)
    x = torch.randn(1, 2, 6, 10)
    wrapped = torch.cat([x[..., -2:], x, x[..., :2]], dim=-1)  # two columns from the far side, each way
    padded = torch.cat([torch.zeros(1, 2, 2, 14), wrapped, torch.zeros(1, 2, 2, 14)], dim=-2)
    expected = F.conv2d(padded, conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    # A field shifted around the periodic direction gives the same output, shifted (no seam).
    torch.testing.assert_close(conv(torch.roll(x, 3, dims=-1)), torch.roll(conv(x), 3, dims=-1))
    # ... but not across the walls: latitude is zero-padded, not wrapped.
    assert not torch.allclose(conv(torch.roll(x, 1, dims=-2)), torch.roll(conv(x), 1, dims=-2))


def test_paper_resnet_has_about_6_3m_parameters() -> None:
    net = build_net(NetConfig(), in_channels=117, out_channels=2)
    assert 6.2e6 < sum(p.numel() for p in net.parameters()) < 6.4e6
    assert sum(isinstance(m, PeriodicConv2d) for m in net.modules()) == 1 + 2 * 19 + 1


def test_plain_twin_differs_only_by_the_identity_adds() -> None:
    config = NetConfig(channels=8, blocks=2)
    torch.manual_seed(0)
    residual = build_net(config, 6, 2).eval()
    plain = build_net(NetConfig(name="plain", channels=8, blocks=2), 6, 2).eval()
    plain.load_state_dict(residual.state_dict())  # same parameters, same names
    x = torch.randn(2, 6, 8, 16)
    assert not torch.allclose(residual(x), plain(x))
    h = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(residual.blocks[0](h), h + residual.blocks[0].body(h))
    torch.testing.assert_close(plain.blocks[0](h), plain.blocks[0].body(h))


def test_wb_cnn_is_five_periodic_convs_of_64_with_elu() -> None:
    net = build_net(NetConfig(name="cnn"), 6, 2)
    convs = [m for m in net.modules() if isinstance(m, PeriodicConv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 64, 64, 2] and {c.kernel_size for c in convs} == {
        (5, 5)
    }
    assert sum(isinstance(m, torch.nn.ELU) for m in net.modules()) == 4


def test_forecaster_predicting_change_adds_the_latest_state() -> None:
    net = torch.nn.Conv2d(6, 2, 1)
    x = torch.randn(1, 6, 4, 8)
    torch.testing.assert_close(Forecaster(net, 2, True)(x), net(x) + x[:, :2])


def test_grid_too_small_is_a_one_line_error() -> None:
    check_grid(NetConfig(), (7, 7))
    with pytest.raises(ReslabError, match="too small for resnet"):
        check_grid(NetConfig(), (6, 64))
    with pytest.raises(ReslabError, match="unknown forecast model"):
        build_net(NetConfig(name="unet"), 2, 2)

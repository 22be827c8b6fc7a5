"""The model zoo: exact parameter counts, torchvision compatibility, unit semantics, serialisation."""

import pickle

import pytest
import torch
import torchvision

import reslab
from reslab import ReslabError, create_model, list_models
from reslab.models import ResidualUnit, ShortcutA
from reslab.models.summary import count_params

IMAGENET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
CIFAR_PARAMS_A = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
CIFAR_PARAMS_B = {20: 272_474, 32: 466_906, 44: 661_338, 56: 855_770, 110: 1_730_714, 1202: 19_424_026}
PREACT_PARAMS = {164: 1_703_258, 1001: 10_327_706}


def meta_params(name: str, **overrides) -> int:
    with torch.device("meta"):
        return count_params(create_model(name, **overrides))


@pytest.mark.parametrize("depth", sorted(IMAGENET_PARAMS))
def test_imagenet_params_exact(depth):
    assert meta_params(f"resnet{depth}") == IMAGENET_PARAMS[depth]


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS_A))
def test_cifar_params_option_a_and_b(depth):
    assert meta_params(f"resnet{depth}") == CIFAR_PARAMS_A[depth]
    assert meta_params(f"resnet{depth}", shortcut="B") == CIFAR_PARAMS_B[depth]


@pytest.mark.parametrize("depth", sorted(PREACT_PARAMS))
def test_preact_cifar_params(depth):
    assert meta_params(f"preact_resnet{depth}") == PREACT_PARAMS[depth]


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_plain_twin_has_same_params_as_option_a(depth):
    assert meta_params(f"plain{depth}") == meta_params(f"resnet{depth}")


@pytest.mark.parametrize("depth", sorted(IMAGENET_PARAMS))
def test_torchvision_state_dict_loads_and_outputs_match(depth):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    model = create_model(f"resnet{depth}").eval()
    model.load_state_dict(reference.state_dict())  # strict: every key identical
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5


def test_weights_argument_loads_torchvision_file(tmp_path):
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_weights_for_other_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ReslabError, match="do not fit resnet34"):
        create_model("resnet34", weights=path)


def test_v1_moves_the_stride_to_the_first_1x1():
    v15 = create_model("resnet50").layer2[0]
    v1 = create_model("resnet50_v1").layer2[0]
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    assert (v1.conv1.stride, v1.conv2.stride) == ((2, 2), (1, 1))
    assert create_model("resnet50", stride_in_1x1=True).config.stride_in_1x1


def test_shortcut_a_has_no_parameters_and_pads_zeros():
    shortcut = ShortcutA(16, 32, stride=2)
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = shortcut(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_shortcut_options_b_and_c():
    b = create_model("resnet20", shortcut="B")
    c = create_model("resnet20", shortcut="C")
    assert b.layer1[0].downsample is None and b.layer2[0].downsample is not None
    assert all(unit.downsample is not None for unit in c.units())
    assert count_params(c) > count_params(b)


@pytest.mark.parametrize("unit_kind", ["basic", "bottleneck"])
def test_residual_unit_with_zeroed_branch_passes_input_and_plain_does_not(unit_kind):
    torch.manual_seed(0)
    x = torch.rand(2, 64, 8, 8)  # non-negative: the final ReLU leaves it unchanged
    for residual in (True, False):
        unit = ResidualUnit(unit_kind, 64, 64, order="post", residual=residual).eval()
        torch.nn.init.zeros_(unit.last_layer().weight)
        with torch.no_grad():
            out = unit(x)
        if residual:
            assert torch.allclose(out, x)
        else:
            assert torch.count_nonzero(out) == 0


def test_plain_twin_has_no_addition():
    torch.manual_seed(0)
    for name, expect_identity in (("resnet20", True), ("plain20", False)):
        model = create_model(name, zero_init_residual=True).eval()
        unit = model.layer1[1]
        x = torch.rand(1, 16, 8, 8)
        with torch.no_grad():
            assert torch.allclose(unit(x), x) is expect_identity


def test_preactivation_order_is_bn_relu_conv():
    unit = ResidualUnit("basic", 16, 16, order="pre")
    calls = []
    for name in ("bn1", "conv1", "bn2", "conv2"):
        getattr(unit, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    unit.relu.register_forward_hook(lambda m, i, o: calls.append("relu"))
    unit(torch.randn(1, 16, 4, 4))
    assert calls == ["bn1", "relu", "conv1", "bn2", "relu", "conv2"]


def test_original_order_is_conv_bn_relu_then_add_then_relu():
    unit = ResidualUnit("basic", 16, 16, order="post")
    calls = []
    for name in ("bn1", "conv1", "bn2", "conv2", "relu"):
        getattr(unit, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    unit(torch.randn(1, 16, 4, 4))
    assert calls == ["conv1", "bn1", "relu", "conv2", "bn2", "relu"]


# Identity Mappings Fig. 4: the layers of each order as they run, "add" where the shortcut joins.
UNIT_ORDERS = {
    "basic": {
        "post": ["conv1", "bn1", "relu", "conv2", "bn2", "add", "relu"],
        "bn_after_add": ["conv1", "bn1", "relu", "conv2", "add", "bn2", "relu"],
        "relu_before_add": ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "add"],
        "relu_preact": ["relu", "conv1", "bn1", "relu", "conv2", "bn2", "add"],
        "pre": ["bn1", "relu", "conv1", "bn2", "relu", "conv2", "add"],
    },
    "bottleneck": {
        "post": ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3", "add", "relu"],
        "bn_after_add": ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "add", "bn3", "relu"],
        "relu_before_add": ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3", "relu", "add"],
        "relu_preact": ["relu", "conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3", "add"],
        "pre": ["bn1", "relu", "conv1", "bn2", "relu", "conv2", "bn3", "relu", "conv3", "add"],
    },
}


def _layer_sequence(unit: ResidualUnit, x: torch.Tensor) -> list[str]:
    """The unit's layers in call order, with "add" placed where the identity shortcut joins: before the
    first layer whose input is the previous layer's output plus x, or at the end when the unit's output
    is the last layer's output plus x."""
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for name in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"):
        module = getattr(unit, name)
        if module is not None:
            module.register_forward_hook(
                lambda m, i, o, name=name: calls.append((name, i[0].detach(), o.detach()))
            )
    with torch.no_grad():
        out = unit(x)
    sequence, previous = [], None
    for name, inp, output in calls:
        if previous is not None and _is_sum(inp, previous, x):
            sequence.append("add")
        sequence.append(name)
        previous = output
    if _is_sum(out, previous, x):
        sequence.append("add")
    return sequence


def _is_sum(total: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
    return total.shape == a.shape == b.shape and torch.allclose(total, a + b, atol=1e-6)


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
@pytest.mark.parametrize("order", ["post", "bn_after_add", "relu_before_add", "relu_preact", "pre"])
def test_activation_order_runs_the_layers_of_identity_mappings_fig_4(kind, order):
    torch.manual_seed(0)
    unit = ResidualUnit(kind, 16, 16, order=order)  # training mode: BN normalises with batch statistics
    for bn in (unit.bn1, unit.bn2, unit.bn3):
        if bn is not None:  # affine BNs that are not the identity on already-normalised inputs
            torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(bn.bias, -0.5, 0.5)
    x = torch.randn(4, 16, 6, 6)
    assert _layer_sequence(unit, x) == UNIT_ORDERS[kind][order]
    # The orders are told apart by their outputs too: after a final ReLU nothing is negative.
    with torch.no_grad():
        out = unit(x)
    assert bool((out >= 0).all()) is (order in ("post", "bn_after_add"))


def test_preact_nets_have_final_bn_relu_and_no_stem_bn():
    model = create_model("preact_resnet164")
    assert model.bn1 is None and model.final_bn is not None
    assert model.layer1[0].preact_shortcut and not model.layer2[0].preact_shortcut


@pytest.mark.parametrize(
    "name,size",
    [
        ("resnet20", 32),
        ("plain20", 32),
        ("preact_resnet20", 32),
        ("resnet18", 64),
        ("resnet50_v1", 64),
        ("preact_resnet18", 64),
        ("plain18", 64),
        ("plain_preact_resnet20", 32),
    ],
)
def test_forward_shape_every_family(name, size):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_grayscale_in_chans_and_wrong_channels_error():
    model = create_model("resnet20", in_chans=1).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, 1, H, W\)"):
        model(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize("name", ["resnet8", "resnet74", "preact_resnet29", "plain14", "cifar_resnet50"])
def test_any_valid_depth_builds(name):
    model = create_model(name)
    assert model.config.depth == int("".join(c for c in name if c.isdigit()))


@pytest.mark.parametrize("name", ["resnet21", "plain23", "preact_resnet30", "resnet33_v1"])
def test_impossible_depth_names_valid_depths(name):
    with pytest.raises(ReslabError, match="depth"):
        create_model(name)


def test_width_multiplier_widens_every_cifar_stage_and_the_stem():
    wide = create_model("resnet20x4", in_chans=1)
    same = create_model("resnet20", in_chans=1, widths=(64, 128, 256), stem_width=64)
    assert wide.config == same.config and wide.config.name == "resnet20x4"
    assert count_params(wide) == count_params(same) > 15 * count_params(create_model("resnet20", in_chans=1))
    assert wide(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    plain = create_model("plain_preact_resnet29x2").config
    assert plain.widths == (128, 256, 512) and plain.stem_width == 32 and not plain.residual
    for name in ("resnet50x2", "resnet20x0"):
        with pytest.raises(ReslabError, match="width multiplier"):
            create_model(name)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ReslabError, match="did you mean resnet50"):
        create_model("resnt50")


def test_unknown_option_is_an_error():
    with pytest.raises(ReslabError, match="unknown model option"):
        create_model("resnet20", widht=3)


def test_list_models_and_pattern():
    names = list_models()
    for expected in (
        "resnet18",
        "resnet152",
        "resnet20",
        "resnet1202",
        "preact_resnet164",
        "preact_resnet1001",
        "plain20",
        "plain1202",
        "plain18",
        "plain152",
        "preact_resnet18",
        "resnet50_v1",
    ):
        assert expected in names
    assert list_models("plain*") and all(n.startswith("plain") for n in list_models("plain*"))
    assert reslab.list_models is list_models


def test_he_init_and_zero_init_residual():
    model = create_model("resnet56")
    conv = model.layer2[3].conv1
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
    zeroed = create_model("resnet56", zero_init_residual=True)
    assert all(torch.count_nonzero(u.last_layer().weight) == 0 for u in zeroed.units())
    pre = create_model("preact_resnet164", zero_init_residual=True)
    assert all(torch.count_nonzero(u.conv3.weight) == 0 for u in pre.units())


@pytest.mark.parametrize("order", ["post", "bn_after_add", "relu_before_add", "relu_preact", "pre"])
def test_every_activation_order_scripts_and_matches_eager(order):
    model = create_model("resnet8", order=order).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(model)(x), model(x), atol=1e-6)


@pytest.mark.parametrize(
    "name,size", [("resnet20", 32), ("preact_resnet11", 32), ("resnet50", 64), ("plain18", 64)]
)
def test_pickle_script_and_export(name, size):
    model = create_model(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(pickle.loads(pickle.dumps(model))(x), expected, atol=1e-6)
        assert torch.allclose(torch.jit.script(model)(x), expected, atol=1e-5)
        exported = torch.export.export(model, (x,))
        assert torch.allclose(exported.module()(x), expected, atol=1e-5)

"""Model names -> ResNetConfig, and create_model / list_models.

Grammar (every depth a family allows, not only the listed ones):
  resnet{D}                 ImageNet (D in 10/18/34/50/101/152/200, torchvision v1.5), else CIFAR 6n+2 (option A)
  resnet{D}_v1              ImageNet, paper v1 (stride on the bottleneck's first 1x1)
  preact_resnet{D}          ImageNet pre-activation (same depths), else CIFAR bottleneck 9n+2 (16/64/128/256)
  cifar_resnet{D}, cifar_preact_resnet{D}, imagenet_resnet{D}, imagenet_preact_resnet{D}: family forced
  plain{D} = plain_resnet{D};  plain_<name>: the plain twin of any name above
  <CIFAR name>x{K}          every stage's channels and the stem's times K (resnet20x4: 64/128/256, stem 64)
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from pathlib import Path
from typing import Any

from ..errors import ReslabError
from ..weights import load_weights
from .config import IMAGENET_STAGES, ResNetConfig
from .resnet import ResNet
from .units import ORDERS, SHORTCUTS

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_PREACT_DEPTHS = (164, 1001)

_NAME = re.compile(
    r"^(?P<plain>plain_?)?(?P<family>cifar_|imagenet_)?(?P<pre>preact_)?(?:resnet)?(?P<depth>\d+)(?:x(?P<width>\d+))?(?P<v1>_v1)?$"
)


def _registered_names() -> list[str]:
    residual = [f"resnet{d}" for d in IMAGENET_DEPTHS]
    residual += [f"resnet{d}_v1" for d in IMAGENET_DEPTHS if IMAGENET_STAGES[d][0] == "bottleneck"]
    residual += [f"resnet{d}" for d in CIFAR_DEPTHS]
    residual += [f"preact_resnet{d}" for d in IMAGENET_DEPTHS + CIFAR_PREACT_DEPTHS]
    plain = [f"plain{d}" for d in IMAGENET_DEPTHS + CIFAR_DEPTHS]
    plain += [f"plain_{n}" for n in residual if n.startswith("preact_") or n.endswith("_v1")]
    return residual + plain


REGISTERED = tuple(_registered_names())


def _valid_depths_message(family: str, pre: bool) -> str:
    if family == "imagenet":
        return "ImageNet ResNets have depth " + ", ".join(map(str, sorted(IMAGENET_STAGES)))
    if pre:
        return (
            "CIFAR pre-activation ResNets are bottleneck nets of depth 9n+2 (11, 20, 29, ..., 164, ..., 1001)"
        )
    return "CIFAR ResNets have depth 6n+2 (8, 14, 20, 26, 32, ..., 110, ..., 1202)"


def _unknown_name(name: str) -> ReslabError:
    close = difflib.get_close_matches(name, REGISTERED, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `reslab models` for the list"
    return ReslabError(f"unknown model {name!r}{hint}")


def resolve_config(name: str) -> ResNetConfig:
    """Parse a model name into its config (defaults: 1000 classes for ImageNet, 10 for CIFAR)."""
    match = _NAME.match(name.strip().lower())
    if not match or (not match["plain"] and "resnet" not in name.lower()):
        raise _unknown_name(name)
    config = _resolve_base(name, match)
    if match["width"] is None:
        return config
    factor = int(match["width"])
    if config.family != "cifar" or factor < 1:
        raise ReslabError(
            f"{name!r}: a width multiplier x{{K}} (K >= 1) widens a CIFAR-family net, e.g. resnet20x4"
        )
    return config.with_overrides(
        widths=tuple(w * factor for w in config.widths), stem_width=config.stem_width * factor
    )


def _resolve_base(name: str, match: re.Match[str]) -> ResNetConfig:
    depth = int(match["depth"])
    pre = bool(match["pre"])
    forced = (match["family"] or "").rstrip("_")
    family = forced or ("imagenet" if depth in IMAGENET_STAGES else "cifar")
    order = "pre" if pre else "post"
    residual = not match["plain"]
    if match["v1"] and family != "imagenet":
        raise ReslabError(
            f"{name!r}: the _v1 variants are ImageNet ResNets ({_valid_depths_message('imagenet', pre)})"
        )

    if family == "imagenet":
        if depth not in IMAGENET_STAGES:
            raise ReslabError(f"{name!r}: no such depth; {_valid_depths_message('imagenet', pre)}")
        unit, layers = IMAGENET_STAGES[depth]
        widths = (64, 128, 256, 512) if unit == "basic" else (256, 512, 1024, 2048)
        return ResNetConfig(
            "imagenet",
            unit,
            layers,
            widths,
            64,
            order=order,
            residual=residual,
            shortcut="B",
            stride_in_1x1=bool(match["v1"]),
            num_classes=1000,
            name=name,
        )
    if pre:
        if depth < 11 or (depth - 2) % 9:
            raise ReslabError(f"{name!r}: no such depth; {_valid_depths_message('cifar', True)}")
        n = (depth - 2) // 9
        return ResNetConfig(
            "cifar",
            "bottleneck",
            (n, n, n),
            (64, 128, 256),
            16,
            order=order,
            residual=residual,
            shortcut="B",
            num_classes=10,
            name=name,
        )
    if depth < 8 or (depth - 2) % 6:
        raise ReslabError(f"{name!r}: no such depth; {_valid_depths_message('cifar', False)}")
    n = (depth - 2) // 6
    return ResNetConfig(
        "cifar",
        "basic",
        (n, n, n),
        (16, 32, 64),
        16,
        order=order,
        residual=residual,
        shortcut="A",
        num_classes=10,
        name=name,
    )


def _check_overrides(config: ResNetConfig) -> None:
    if config.shortcut not in SHORTCUTS:
        raise ReslabError(f"unknown shortcut option {config.shortcut!r}; choose A, B or C")
    if config.order not in ORDERS:
        raise ReslabError(f"unknown activation order {config.order!r}; choose one of {', '.join(ORDERS)}")
    if config.num_classes < 0 or config.in_chans < 1:
        raise ReslabError(
            "num_classes must not be negative (0: no classifier, the net returns pooled features) "
            "and in_chans must be positive",
            params=("num_classes", "in_chans"),
        )


def build_model(config: ResNetConfig) -> ResNet:
    _check_overrides(config)
    return ResNet(config)


def create_model(
    name: str, weights: str | Path | None = None, *, pretrained: bool = False, **overrides: Any
) -> ResNet:
    """Build a model by name. Overrides: num_classes, in_chans, shortcut, stride_in_1x1,
    zero_init_residual, order, residual. weights: a torchvision .pth, a .safetensors file or a reslab
    checkpoint (`module.` prefixes stripped; with num_classes given, the classifier is new), or the name
    of torchvision's ImageNet weights for this architecture ("IMAGENET1K_V1", "DEFAULT"; reslab.pretrained:
    downloaded into torch.hub's cache; another num_classes gets a new classifier, another in_chans an
    adapted first convolution; their metadata is `model.pretrained_cfg`). pretrained=True: "DEFAULT"."""
    config = resolve_config(name)
    if pretrained:
        if weights is not None:
            raise ReslabError("give weights or pretrained=True, not both", params=("weights",))
        weights = "DEFAULT"
    # features_only: a ResNetFeatures returning the stage outputs at out_indices (reslab.models.features)
    features_only, out_indices = overrides.pop("features_only", False), overrides.pop("out_indices", None)
    unknown = set(overrides) - set(ResNetConfig.__dataclass_fields__) - {"name"}
    if unknown:
        raise ReslabError(f"unknown model option(s) {', '.join(sorted(unknown))}")
    model = build_model(config.with_overrides(**overrides))
    if weights is not None:
        from ..pretrained import is_weights_name

        # Asking for a class count (0: a headless backbone) means a new classifier, as timm does.
        new_classifier = is_weights_name(weights) or "num_classes" in overrides
        load_weights(model, weights, new_classifier=new_classifier)
    if features_only:
        from .features import ResNetFeatures

        return ResNetFeatures(model, out_indices)  # type: ignore[return-value]
    if out_indices is not None:
        raise ReslabError("out_indices needs features_only=True", params=("out_indices", "features_only"))
    return model


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names (any valid depth can also be built), filtered by a glob pattern."""
    if pattern is None:
        return list(REGISTERED)
    return [n for n in REGISTERED if fnmatch.fnmatch(n, pattern)]

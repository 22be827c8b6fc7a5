"""Pretrained ImageNet weights by name ("IMAGENET1K_V1", "DEFAULT", "ResNet50_Weights.IMAGENET1K_V2"),
resolved through torchvision's own registry and fetched into torch.hub's cache (TORCH_HOME).

reslab's standard ImageNet ResNets (resnet18/34/50/101/152: torchvision v1.5) have exactly torchvision's
state_dict keys, so torchvision's files load as they are. A model carries the weights' metadata as
`model.pretrained_cfg` (timm's name): mean, std, resize and crop sizes, class names.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import torch

from .errors import ReslabError
from .models.config import ResNetConfig

TORCHVISION_DEPTHS = (18, 34, 50, 101, 152)
# Suffixes that make a string a file path, not a weights name ("ResNet50_Weights.IMAGENET1K_V2" has a dot).
_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors")


def is_weights_name(weights: Any) -> bool:
    """True for a torchvision weights enum, or a string that names weights rather than a file: no
    existing file or folder of that name, no path separator, no weights-file suffix."""
    from torchvision.models import WeightsEnum

    if isinstance(weights, WeightsEnum):
        return True
    if not isinstance(weights, str):
        return False  # a Path is always a file
    text = weights.strip()
    if not text or Path(text).exists() or "/" in text or "\\" in text:
        return False
    return not text.lower().endswith(_FILE_SUFFIXES)


def require_weights_name(weights: Any) -> None:
    """Where only a weights name can serve (no checkpoint given), a file is one clear line."""
    if not is_weights_name(weights):
        raise ReslabError(
            f"weights {str(weights)!r} is a file; give it as checkpoint, or a name such as DEFAULT",
            params=("weights", "checkpoint"),
        )


def split_weights_name(text: str) -> tuple[str, str] | None:
    """A model and its weights in one name, or None: "ResNet50_Weights.IMAGENET1K_V2" and
    "resnet50.IMAGENET1K_V2" -> ("resnet50", "IMAGENET1K_V2"); "resnet18.DEFAULT" -> ("resnet18", "DEFAULT")."""
    if not is_weights_name(text):
        return None
    prefix, dot, member = text.strip().rpartition(".")
    for depth in TORCHVISION_DEPTHS:
        if dot and member and prefix.lower() in (f"resnet{depth}", f"resnet{depth}_weights"):
            return f"resnet{depth}", member
    return None


def torchvision_name(config: ResNetConfig, asked: str = "") -> str:
    """The torchvision model whose weights fit `config` (classes, input channels and the residual-zero
    init aside), or a ReslabError saying there is none. asked: the weights name given, for messages."""
    from .models.zoo import resolve_config

    name = config.name or f"resnet{config.depth}"
    depth = config.depth
    if config.family != "imagenet" or depth not in TORCHVISION_DEPTHS:
        known = ", ".join(f"resnet{d}" for d in TORCHVISION_DEPTHS)
        not_file = f"weights {asked!r} is no file, and " if asked else ""
        raise ReslabError(
            f"{not_file}torchvision has no pretrained checkpoint for {name} (only for {known}); "
            "give weights a file of your own",
            params=("weights",),
        )
    canonical = resolve_config(f"resnet{depth}")
    if config.with_overrides(num_classes=1000, in_chans=3, zero_init_residual=False) != canonical:
        raise ReslabError(
            f"{name} as configured is not torchvision's resnet{depth} (which has post-activation, "
            "shortcut B, the stride on the 3x3), so torchvision's checkpoints do not fit it",
            params=("weights",),
        )
    return f"resnet{depth}"


def resolve_weights(config: ResNetConfig, weights: Any) -> Any:
    """The torchvision WeightsEnum member that `weights` names for the model `config` describes."""
    from torchvision.models import WeightsEnum, get_model_weights

    tv_name = torchvision_name(config, "" if isinstance(weights, WeightsEnum) else str(weights).strip())
    enum = get_model_weights(tv_name)
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum):
            raise ReslabError(
                f"weights {str(weights)!r} are for another model, not {config.name or tv_name}",
                params=("weights",),
            )
        return weights
    text = str(weights).strip()
    prefix, _, member = text.rpartition(".")
    member = member.upper()
    if (not prefix or prefix.lower() == enum.__name__.lower()) and member in enum.__members__:
        return enum[member]
    choices = [m for m in enum.__members__ if m != "DEFAULT"] + [f"DEFAULT (= {enum.DEFAULT.name})"]
    raise ReslabError(
        f"weights {text!r} is neither a file nor a name torchvision knows for {config.name or tv_name}; "
        f"choose {', '.join(choices[:-1])} or {choices[-1]}",
        params=("weights",),
    )


def cache_file(url: str) -> Path:
    """Where torch.hub keeps (and looks for) the file at `url`: <hub dir>/checkpoints/<basename>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def download_state_dict(weights: Any, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of torchvision weights `weights`, from torch.hub's cache or downloaded into it with
    the hash in its file name checked. Offline (or any failed download): one line naming the file to
    place in the cache by hand."""
    from .weights import clean_state_dict, read_torch_file

    url = weights.url
    target = cache_file(url)
    cached = target.is_file()
    try:
        # torch.hub writes "Downloading: <url> to <file>" to stdout, which is for results (predict --json),
        # and a failure must stay one line on stderr: drop it (the progress bar shows a download).
        with contextlib.redirect_stdout(io.StringIO()):
            state = torch.hub.load_state_dict_from_url(
                url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
            )
    except Exception as exc:  # no network, HTTP errors, a hash mismatch, a file torch cannot read
        if cached or target.is_file():
            read_torch_file(target, f"cached {weights}", params=())  # says why it cannot be read
            raise ReslabError(f"cannot read cached {weights} {str(target)!r}: {_reason(exc)}") from None
        raise ReslabError(
            f"cannot download {weights} from {url} ({_reason(exc)}); without network, copy the file "
            f"{target.name} into torch.hub's cache as {str(target)!r}"
        ) from None
    return clean_state_dict(state, f"cached {weights} {str(target)!r}", params=())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, URLError):
        return str(getattr(exc, "reason", exc)) or type(exc).__name__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def adapt_input_conv(in_chans: int, conv_weight: torch.Tensor) -> torch.Tensor:
    """A 3-channel first convolution for `in_chans` inputs, as timm's adapt_input_conv: one channel sums
    the RGB filters; more channels repeat them and scale by 3 / in_chans (the response to a constant
    input stays the same)."""
    if in_chans == conv_weight.shape[1]:
        return conv_weight
    if conv_weight.shape[1] != 3:
        raise ReslabError(
            f"cannot adapt a first convolution of {conv_weight.shape[1]} channels to {in_chans}"
        )
    dtype = conv_weight.dtype
    weight = conv_weight.float()
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    else:
        repeat = math.ceil(in_chans / 3)
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (3 / float(in_chans))
    return weight.to(dtype)


def pretrained_cfg(weights: Any, in_chans: int = 3, num_classes: int = 1000) -> dict[str, Any]:
    """What inference needs from the weights' metadata: their eval transform's normalisation, resize and
    crop, and the class names (None once the classifier is replaced by one of another size)."""
    transform = weights.transforms()
    mean, std = [float(v) for v in transform.mean], [float(v) for v in transform.std]
    if in_chans == 1:  # the summed filters see one grey channel: its statistics are the RGB average
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    elif in_chans != 3:
        mean = (mean * math.ceil(in_chans / 3))[:in_chans]
        std = (std * math.ceil(in_chans / 3))[:in_chans]
    categories = list(weights.meta.get("categories") or [])
    crop = int(transform.crop_size[0])
    return {
        "weights": str(weights),
        "url": weights.url,
        "mean": tuple(mean),
        "std": tuple(std),
        "input_size": (in_chans, crop, crop),
        "resize_size": int(transform.resize_size[0]),
        "crop_size": crop,
        "interpolation": str(transform.interpolation.value),
        "num_classes": num_classes,
        "class_names": categories if len(categories) == num_classes else None,
    }


def pretrained_state(
    config: ResNetConfig, weights: Any, progress: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict the weights named `weights` give a model of `config` (first convolution adapted to
    its input channels) and the model's pretrained_cfg."""
    resolved = resolve_weights(config, weights)
    state = download_state_dict(resolved, progress=progress)
    if "conv1.weight" in state:
        state["conv1.weight"] = adapt_input_conv(config.in_chans, state["conv1.weight"])
    return state, pretrained_cfg(resolved, config.in_chans, config.num_classes)

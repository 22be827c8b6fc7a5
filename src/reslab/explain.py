"""Grad-CAM (Selvaraju et al. 2017): where in the image a layer's evidence for a class lies.

For the activations A (N, K, h, w) of one layer and the score y_c of class c, the map is
ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of dy_c/dA_k, upsampled (bilinear) to the input's
size and scaled to [0, 1] per image. The layer is named by its module path, as torchvision names it:
"layer4" (the last stage of the ImageNet nets), "layer3" (the last of the CIFAR nets), "layer4.1.conv2".

The sanity check of Adebayo et al. 2018 ("Sanity Checks for Saliency Maps"): a map that explains the
trained network must change when its weights are replaced by random ones. `randomized_copy` makes that
network and `rank_correlation` measures how alike two sets of maps are (Spearman's rho per image).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ReslabError

if TYPE_CHECKING:
    from .classifier import ImageClassifier

STAGES = ("layer4", "layer3", "layer2", "layer1")


def default_layer(model: nn.Module) -> str:
    """The last residual stage: layer4 on the ImageNet nets, layer3 on the CIFAR nets."""
    for name in STAGES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise ReslabError(
        f"{type(model).__name__} has no layer1..layer4; name a layer to explain", params=("layer",)
    )


def layer_name(model: nn.Module, layer: str | None) -> str:
    """`layer`, or for None, and for "layer4" on a net whose last stage is layer3 (the CIFAR nets), the
    last stage (default_layer)."""
    if layer is None or (layer == "layer4" and not isinstance(getattr(model, "layer4", None), nn.Module)):
        return default_layer(model)
    return layer


def find_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The module at path layer_name(model, layer): "layer4", "layer4.1.conv2"."""
    name = layer_name(model, layer)
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Module) or name == "":
        stages = [n for n in STAGES[::-1] if isinstance(getattr(model, n, None), nn.Module)]
        raise ReslabError(
            f"layer {name!r} is not a module of the model; name one such as {', '.join(stages) or 'conv1'}",
            params=("layer",),
        )
    return module


def gradcam(
    model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None, layer: str | None = "layer4"
) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] of `model` on normalised inputs x (N, C, H, W), for class
    `target` (an int for all, a tensor of N, or None: each image's top class) at module `layer`
    (None, or "layer4" on a net without one: its last stage). The model is put in eval mode."""
    module = find_layer(model, layer)
    model.eval()
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        with torch.enable_grad():
            inputs = x.detach().float().requires_grad_(True)  # a graph even when the weights are frozen
            logits = model(inputs)
            chosen = _targets(target, logits)
            score = logits.gather(1, chosen.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, captured[0])
    finally:
        handle.remove()
    activations = captured[0].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).detach()


def _targets(target: int | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    n, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    chosen = torch.as_tensor(target, device=logits.device).long()
    if chosen.dim() == 0:
        chosen = chosen.expand(n)
    if chosen.shape != (n,) or bool(((chosen < 0) | (chosen >= classes)).any()):
        raise ReslabError(
            f"target must be a class index below {classes} (one, or one per image)", params=("target",)
        )
    return chosen


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture with every parameter re-initialised (Adebayo et al.'s model randomisation)
    and BN statistics reset."""
    randomized = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in randomized.modules():
        if module is not randomized and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return randomized.eval()


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor) -> list[float]:
    """Spearman's rho between corresponding maps (N, H, W): 1 = the same ranking of pixels."""
    from scipy.stats import spearmanr

    rhos = []
    for a, b in zip(maps_a.flatten(1).numpy(), maps_b.flatten(1).numpy(), strict=True):
        constant = a.min() == a.max() or b.min() == b.max()  # ranks nothing: rho undefined, counted as 0
        rhos.append(0.0 if constant else float(spearmanr(a, b).statistic))
    return rhos


def explain_pixels(
    classifier: ImageClassifier, pixels: torch.Tensor, layer: str | None = "layer4", target: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, classes) and Grad-CAM maps (N, H, W) of uint8 images (N, C, H, W), read by
    the classifier's transform, from its fp32 model; the maps explain `target`, else each top class."""
    x = classifier.normalised(pixels)
    with torch.no_grad():
        probs = torch.softmax(classifier.model(x).float(), dim=1).cpu()
    chosen = probs.argmax(dim=1) if target is None else target
    return probs, gradcam(classifier.model, x, chosen, layer).cpu()

"""`evaluate` and `predict`: a checkpoint on a data split or on image files (the CLI calls exactly these).

Both need only the checkpoint: it says which data, split seed, normalisation, channels, image size and
classes the model expects, and which precision it trained in (the default for both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint, model_from_checkpoint, run_config_of
from .data import load_data, normalise
from .data.images import read_resized
from .errors import ReslabError
from .precision import Precision, resolve_device, resolve_precision
from .run_config import RunConfig
from .split_metrics import evaluate_split

EVAL_BATCH_SIZE = 500


def _checkpoint_and_model(checkpoint: str | Path, dev: torch.device) -> tuple[dict[str, Any], nn.Module]:
    payload = load_checkpoint(checkpoint)
    if "data" not in payload or "class_names" not in payload.get("data", {}):
        raise ReslabError(f"checkpoint {payload['path']!r} does not say what data it expects")
    model = model_from_checkpoint(payload).to(dev).eval()
    return payload, model


def _trained_with(payload: dict[str, Any]) -> RunConfig | None:
    """The run config the checkpoint was trained with, if it holds a readable one (eval and predict need
    only its precision and split seed, and fall back to auto and 0 without it)."""
    try:
        return run_config_of(payload)
    except ReslabError:
        return None


def _precision(payload: dict[str, Any], precision: str | None, dev: torch.device) -> Precision:
    """`precision`, else the one the run trained (and validated) in, so `eval` repeats test.json; auto
    where that one cannot run here (fp16 off CUDA)."""
    if precision is None:
        trained = _trained_with(payload)
        precision = trained.precision.precision if trained is not None else "auto"
        if precision == "fp16" and dev.type != "cuda":
            precision = "auto"
    return resolve_precision(precision, dev)


def _inference_model(
    model: nn.Module, example: torch.Tensor, prec: Precision, dev: torch.device, fast: bool, workload: int
) -> nn.Module:
    if fast:
        from .infer import optimize_for_inference

        return optimize_for_inference(model, example, precision=prec.name, device=dev, workload=workload)
    return model.to(memory_format=torch.channels_last) if prec.channels_last else model


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    device: str = "auto",
    precision: str | None = None,
    download: bool = False,
    fast: bool = True,
) -> dict[str, Any]:
    """Loss, error, accuracy, per-class accuracy and the confusion matrix of a checkpoint on a split.
    precision None: the one the checkpoint was trained in. fast: reslab.infer.optimize_for_inference
    (BN folded, weights in the precision's dtype, compiled when the split is big enough to pay for it).
    The data defaults to the checkpoint's (same spec and seed, so the same split); inputs are normalised
    with the statistics training used, and must have the channels, image size and classes it had."""
    if split not in ("train", "val", "test"):
        raise ReslabError(f"unknown split {split!r}; choose train, val or test")
    dev = resolve_device(device)
    payload, model = _checkpoint_and_model(checkpoint, dev)
    prec = _precision(payload, precision, dev)
    info = payload["data"]
    trained = _trained_with(payload)
    seed = trained.seed if trained is not None else 0
    spec = data or info["spec"]
    bundle = load_data(spec, seed=seed, download=download)
    _check_fits(spec, bundle.in_chans, bundle.image_size, bundle.num_classes, info)
    images = bundle.split(split).to(dev)
    n = len(images)
    example = torch.zeros((max(1, min(n, EVAL_BATCH_SIZE)), *images.images.shape[1:]), device=dev)
    model = _inference_model(model, example, prec, dev, fast, workload=n)
    mean, std = tuple(info["mean"]), tuple(info["std"])
    result = evaluate_split(model, images, mean, std, prec, bundle.num_classes, batch_size=EVAL_BATCH_SIZE)
    return {
        "checkpoint": payload["path"],
        "model": payload["model_name"],
        "data": spec,
        "split": split,
        "precision": prec.name,
        **result,
        "class_names": list(info["class_names"]),
    }


def _check_fits(
    spec: str, in_chans: int, image_size: tuple[int, int], num_classes: int, info: dict[str, Any]
) -> None:
    """The data must be what the model was trained on in shape: channels, image size, class count."""
    if in_chans != info["in_chans"]:
        raise ReslabError(f"data {spec!r} has {in_chans} channel(s) but the model expects {info['in_chans']}")
    trained_size = tuple(info["image_size"])
    if tuple(image_size) != trained_size:
        raise ReslabError(
            f"data {spec!r} has {image_size[0]}x{image_size[1]} images but the model was trained on "
            f"{trained_size[0]}x{trained_size[1]}; evaluate it on data of that size"
        )
    if num_classes != len(info["class_names"]):
        raise ReslabError(
            f"data {spec!r} has {num_classes} classes but the model predicts {len(info['class_names'])}"
        )


def _check_predict_request(topk: int, images: list[str | Path]) -> None:
    if topk < 1:
        raise ReslabError(f"topk must be at least 1, got {topk}", params=("topk",))
    if not images:
        raise ReslabError("no images given")


def predict(
    checkpoint: str | Path,
    images: list[str | Path],
    topk: int = 5,
    device: str = "auto",
    fast: bool = True,
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """Top-k classes with probabilities for each image file, read and normalised as training saw data.
    precision None: the one the checkpoint was trained in (as `evaluate`). fast:
    reslab.infer.optimize_for_inference (never compiles for a handful of images)."""
    from .data.images import read_image

    _check_predict_request(topk, images)
    dev = resolve_device(device)
    payload, model = _checkpoint_and_model(checkpoint, dev)
    prec = _precision(payload, precision, dev)
    info = payload["data"]
    names = list(info["class_names"])
    pixels = torch.stack([read_image(p, info["in_chans"], tuple(info["image_size"])) for p in images])
    return _top_classes(model, pixels, info["mean"], info["std"], names, images, topk, prec, dev, fast)


def _top_classes(
    model: nn.Module,
    pixels: torch.Tensor,
    mean_values: Any,
    std_values: Any,
    names: list[str],
    images: list[str | Path],
    topk: int,
    prec: Precision,
    dev: torch.device,
    fast: bool,
) -> list[dict[str, Any]]:
    """predict's result for uint8 images (N, C, H, W), normalised with mean and std."""
    mean = torch.tensor(mean_values, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(std_values, dtype=torch.float32).view(1, -1, 1, 1)
    x = normalise(pixels, mean, std).to(dev)
    if prec.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model = _inference_model(model, x, prec, dev, fast, workload=len(x))
    with torch.inference_mode(), prec.autocast():
        probs = torch.softmax(model(x).float(), dim=1).cpu()
    k = min(topk, len(names))
    values, indices = probs.topk(k, dim=1)
    return [
        {
            "image": str(path),
            "top": [
                {"class": names[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(vals.tolist(), idx.tolist(), strict=True)
            ],
        }
        for path, vals, idx in zip(images, values, indices, strict=True)
    ]


def predict_pretrained(
    model_name: str,
    weights: str,
    images: list[str | Path],
    topk: int = 5,
    device: str = "auto",
    fast: bool = True,
    precision: str | None = None,
) -> list[dict[str, Any]]:
    """`predict` with torchvision's pretrained ImageNet weights by name (create_model(model_name,
    weights=weights), e.g. "resnet50", "DEFAULT") instead of a checkpoint: the weights' class names, and
    their eval transform (shorter side resized to resize_size, centre crop of crop_size, their mean and
    std) on images read as RGB. precision None: auto."""
    from .models import create_model
    from .pretrained import require_weights_name

    _check_predict_request(topk, images)
    require_weights_name(weights)
    dev = resolve_device(device)
    model = create_model(model_name, weights=weights)
    cfg = model.pretrained_cfg
    names = cfg["class_names"] or [str(i) for i in range(cfg["num_classes"])]
    pixels = torch.stack([read_resized(p, cfg["resize_size"], cfg["crop_size"]) for p in images])
    prec = resolve_precision(precision or "auto", dev)
    model = model.to(dev).eval()
    return _top_classes(model, pixels, cfg["mean"], cfg["std"], names, images, topk, prec, dev, fast)

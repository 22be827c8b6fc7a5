"""`evaluate`: a checkpoint on a data split (the CLI calls exactly this), and the checkpoint helpers
`predict` (reslab.batch_predict) shares.

Both need only the checkpoint: it says which data, split seed, normalisation, channels, image size and
classes the model expects, and which precision it trained in (the default for both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint, model_from_checkpoint, run_config_of
from .data import DataBundle, load_data
from .data.options import DataOptions
from .errors import ReslabError
from .precision import Precision, resolve_device, resolve_inference_precision
from .run_config import RunConfig
from .split_metrics import evaluate_split, evaluation_batch_size


def checkpoint_and_model(checkpoint: str | Path, dev: torch.device) -> tuple[dict[str, Any], nn.Module]:
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


def checkpoint_precision(payload: dict[str, Any], precision: str | None, dev: torch.device) -> Precision:
    """`precision`, else the one the run trained (and validated) in, so `eval` repeats test.json; auto
    where that one cannot run here (fp16 off CUDA)."""
    if precision is None:
        trained = _trained_with(payload)
        precision = trained.precision.precision if trained is not None else "auto"
        if precision == "fp16" and dev.type != "cuda":
            precision = "auto"
    return resolve_inference_precision(precision, dev)


def trained_seed(payload: dict[str, Any]) -> int:
    """The split seed the checkpoint's run used (0 without a readable run config)."""
    trained = _trained_with(payload)
    return trained.seed if trained is not None else 0


def checkpoint_data(payload: dict[str, Any], spec: str | None = None, download: bool = False) -> DataBundle:
    """`spec` (None: the checkpoint's own data) prepared as the checkpoint's run prepared its data: the
    same split seed, image size, training crop (which decides the evaluation transform) and, for its own
    data, the same memory or stream mode."""
    trained = _trained_with(payload)
    options = DataOptions()
    if trained is not None:
        own = spec is None or spec == trained.data.spec
        mode = trained.data.mode if own else "auto"
        options = DataOptions(trained.data.image_size, mode, trained.train.crop)
    return load_data(spec or payload["data"]["spec"], trained_seed(payload), download, options)


def inference_model(
    model: nn.Module,
    example: torch.Tensor,
    prec: Precision,
    dev: torch.device,
    fast: bool,
    workload: int,
    calibration: torch.Tensor | None = None,
) -> nn.Module:
    """calibration: int8's calibration images (reslab.quantize)."""
    if prec.name == "int8" and not fast:
        raise ReslabError("precision int8 is a fast path: drop --no-fast", params=("fast",))
    if fast:
        from .infer import optimize_for_inference

        return optimize_for_inference(
            model, example, precision=prec.name, device=dev, workload=workload, calibration=calibration
        )
    return model.to(memory_format=torch.channels_last) if prec.channels_last else model


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    device: str = "auto",
    precision: str | None = None,
    download: bool = False,
    fast: bool = True,
    calibration: str | None = None,
) -> dict[str, Any]:
    """Loss, error, accuracy, per-class accuracy and the confusion matrix of a checkpoint on a split.
    precision None: the one the checkpoint was trained in. fast: reslab.infer.optimize_for_inference
    (BN folded, weights in the precision's dtype, compiled when the split is big enough to pay for it).
    The data defaults to the checkpoint's (same spec and seed, so the same split); inputs are normalised
    with the statistics training used, and must have the channels, image size and classes it had.
    calibration: int8 only: "data" (None: the checkpoint's training data) or "folder:DIR"."""
    if split not in ("train", "val", "test"):
        raise ReslabError(f"unknown split {split!r}; choose train, val or test")
    dev = resolve_device(device)
    payload, model = checkpoint_and_model(checkpoint, dev)
    prec = checkpoint_precision(payload, precision, dev)
    info = payload["data"]
    spec = data or info["spec"]
    bundle = checkpoint_data(payload, spec, download)
    _check_fits(spec, bundle.in_chans, bundle.image_size, bundle.num_classes, info)
    images = bundle.split(split).to(dev)
    n = len(images)
    batch_size = evaluation_batch_size(bundle.image_size)
    example = torch.zeros((max(1, min(n, batch_size)), bundle.in_chans, *bundle.image_size), device=dev)
    calib = None
    if prec.name == "int8":
        from .quantize import eval_calibration

        calib = eval_calibration(calibration, payload, bundle if spec == info["spec"] else None)
    model = inference_model(model, example, prec, dev, fast, workload=n, calibration=calib)
    mean, std = tuple(info["mean"]), tuple(info["std"])
    result = evaluate_split(
        model,
        images,
        mean,
        std,
        prec,
        bundle.num_classes,
        batch_size=batch_size,
        transform=bundle.evaluation,
        device=dev,
    )
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

"""A trained image classifier ready for inference: the model, how it reads an image, its classes.

`load_classifier(CKPT_OR_WEIGHTS_NAME)` is what `reslab predict`, `reslab serve` and `reslab explain` are
pointed at: a reslab checkpoint (a file, or a run folder: its best.pt), whose data record says the
channels, size, mean, std and classes training used; or torchvision's pretrained ImageNet weights by
name ("resnet50.IMAGENET1K_V2", "ResNet50_Weights.DEFAULT"), read by the weights' own eval transform.

`prepare(batch_size, workload)` builds the fast path once (reslab.infer.optimize_for_inference: BN
folded, the precision's dtype, compiled when the workload pays for it); `probabilities(pixels)` then
runs it. `model` stays the plain fp32 module, for Grad-CAM's gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import normalise
from .data.eval_transform import EvalTransform
from .errors import ReslabError
from .precision import Precision, resolve_device, resolve_inference_precision


@dataclass
class ImageClassifier:
    model: nn.Module  # eval mode, fp32, on `device`
    transform: EvalTransform
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    precision: Precision
    device: torch.device
    source: str  # the checkpoint file or the weights name
    name: str  # the model's name
    fast: bool = True
    calibration: str | None = None  # int8: "data" (None: the checkpoint's training data) or "folder:DIR"
    _runner: nn.Module | None = field(default=None, repr=False)

    def prepare(self, batch_size: int, workload: int | None = None) -> None:
        """Build the inference module for batches of `batch_size` and `workload` images in all (which
        decides whether compiling pays). Called again, it keeps the first."""
        if self._runner is not None:
            return
        from .evaluate import inference_model

        c, (h, w) = self.transform.in_chans, self.transform.size
        example = torch.zeros((batch_size, c, h, w), device=self.device)
        if self.precision.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        calibration = None
        if self.precision.name == "int8":
            from .quantize import classifier_calibration

            calibration = classifier_calibration(self)
        self._runner = inference_model(
            self.model, example, self.precision, self.device, self.fast, workload or batch_size, calibration
        )

    def __post_init__(self) -> None:
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)

    def normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the float input the model was trained on, on its device."""
        x = normalise(pixels, self._mean, self._std).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else x

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes), fp32 on the CPU, for uint8 images (N, C, H, W)."""
        self.prepare(max(1, len(pixels)))
        assert self._runner is not None
        with torch.inference_mode(), self.precision.autocast():
            return torch.softmax(self._runner(self.normalised(pixels)).float(), dim=1).cpu()

    def top(self, probs: torch.Tensor, topk: int) -> list[list[dict[str, Any]]]:
        """For each row of `probs`, its `topk` classes, most probable first."""
        values, indices = probs.topk(min(topk, len(self.class_names)), dim=1)
        return [
            [
                {"class": self.class_names[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(vals.tolist(), idx.tolist(), strict=True)
            ]
            for vals, idx in zip(values, indices, strict=True)
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "source": self.source,
            "classes": list(self.class_names),
            "input": self.transform.to_dict(),
            "mean": list(self.mean),
            "std": list(self.std),
            "precision": self.precision.name,
            "device": str(self.device),
        }


def load_classifier(
    source: str | Path,
    weights: str | None = None,
    device: str = "auto",
    precision: str | None = None,
    fast: bool = True,
) -> ImageClassifier:
    """A checkpoint file or run folder, a weights name ("resnet50.IMAGENET1K_V2"), or with `weights` a
    model name and its weights ("resnet50", "DEFAULT"). precision None: a checkpoint's training precision,
    auto for pretrained weights."""
    from .pretrained import is_weights_name, split_weights_name

    dev = resolve_device(device)
    if weights is not None:
        return _from_weights(str(source), weights, dev, precision, fast)
    named = split_weights_name(str(source))
    if named is not None:
        return _from_weights(*named, dev, precision, fast)
    if not Path(source).exists() and is_weights_name(str(source)):  # a file's name: load_checkpoint says why
        raise ReslabError(
            f"{str(source)!r} is neither a checkpoint nor a weights name such as resnet50.IMAGENET1K_V2",
            params=("checkpoint",),
        )
    return _from_checkpoint(source, dev, precision, fast)


def _from_checkpoint(
    checkpoint: str | Path, dev: torch.device, precision: str | None, fast: bool
) -> ImageClassifier:
    from .evaluate import checkpoint_and_model, checkpoint_precision

    payload, model = checkpoint_and_model(checkpoint, dev)
    info = payload["data"]
    return ImageClassifier(
        model=model,
        transform=EvalTransform.of_data_info(info),
        mean=tuple(float(v) for v in info["mean"]),
        std=tuple(float(v) for v in info["std"]),
        class_names=[str(c) for c in info["class_names"]],
        precision=checkpoint_precision(payload, precision, dev),
        device=dev,
        source=str(payload["path"]),
        name=str(payload.get("model_name", "")),
        fast=fast,
    )


def _from_weights(
    model_name: str, weights: str, dev: torch.device, precision: str | None, fast: bool
) -> ImageClassifier:
    from .models import create_model
    from .pretrained import require_weights_name

    require_weights_name(weights)
    model = create_model(model_name, weights=weights)
    cfg = model.pretrained_cfg
    return ImageClassifier(
        model=model.to(dev).eval(),
        transform=EvalTransform.resize_crop(cfg["resize_size"], cfg["crop_size"]),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        class_names=list(cfg["class_names"] or [str(i) for i in range(cfg["num_classes"])]),
        precision=resolve_inference_precision(precision or "auto", dev),
        device=dev,
        source=str(cfg["weights"]),
        name=model_name,
        fast=fast,
    )

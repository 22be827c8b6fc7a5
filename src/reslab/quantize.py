"""int8 post-training static quantization for CPU inference (`optimize_for_inference(precision="int8")`).

Backends:

- "torchao": PyTorch's own PT2E path. BN folded (reslab.infer.fold_batchnorm), `torch.export`, torchao's
  `X86InductorQuantizer` (per-channel symmetric int8 weights, per-tensor uint8 activations observed by
  histogram on the calibration images), `convert_pt2e`, then `torch.compile` with inductor freezing,
  whose int8 passes fuse conv + add + ReLU into oneDNN quantized convolutions.
- "openvino": OpenVINO converted from the `torch.export` program, quantized by NNCF on the same
  calibration images (`pip install reslab[openvino]`).

"auto" picks openvino where it is installed, else torchao: OpenVINO is the faster of the two on the AVX2
machine measured (resnet50 at batch 16: 1.04x quiet, 1.4x under load; resnet20 at batch 256: 2.3x under
load; docs/speed.md), and with
reslab's NNCF settings (the stem convolution and the classifier kept in fp32, full bias correction) it
agreed with fp32 on 99.61% of a Fashion-MNIST model's 10,000 test top-1s (torchao: 99.45%).

Why `_unshare_activations`: a reslab (or torchvision) residual unit calls one `nn.ReLU` module two or
three times. torch.export's default non-strict mode records no `source_fn_stack`, so torch.fx's
`get_source_partitions` groups nodes by the module they came from, and puts all the calls of that one
ReLU into one "partition" with several outputs; X86InductorQuantizer's conv + add + ReLU pattern then
fails with "Input partition has more than one output node". Strict export (dynamo) names each call
apart and works, but takes ~8x longer; giving each activation node its own source entry is the same fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .errors import ReslabError
from .infer import InferenceModel, fold_batchnorm
from .precision import Precision

if TYPE_CHECKING:
    from .classifier import ImageClassifier
    from .data import DataBundle

BACKENDS = ("auto", "torchao", "openvino")
DEFAULT_CALIBRATION_IMAGES = 256
# Single-op activation modules a network may call more than once (see module docstring).
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.SiLU, nn.GELU)


def int8_precision(device: torch.device) -> Precision:
    """The Precision record for int8 (fp32 inputs and outputs; int8 inside). CPU only."""
    if device.type != "cpu":
        raise ReslabError(
            f"precision int8 runs on the CPU (X86 oneDNN kernels), not on {device.type}; use --device cpu",
            params=("precision",),
        )
    return Precision("int8", "cpu", None, channels_last=False)


def installed_backends() -> list[str]:
    """The int8 backends whose packages are importable here."""
    found = []
    if importlib.util.find_spec("torchao") is not None:
        found.append("torchao")
    if importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None:
        found.append("openvino")
    return found


def resolve_backend(name: str) -> str:
    """ "auto" -> openvino if installed, else torchao; a named backend must be installed."""
    if name not in BACKENDS:
        raise ReslabError(f"unknown int8 backend {name!r}; choose {', '.join(BACKENDS)}", params=("backend",))
    have = installed_backends()
    if name == "auto":
        for candidate in ("openvino", "torchao"):
            if candidate in have:
                return candidate
        raise ReslabError(
            "precision int8 needs torchao (pip install torchao) or OpenVINO (pip install reslab[openvino])",
            params=("precision",),
        )
    if name not in have:
        extra = "torchao" if name == "torchao" else "reslab[openvino]"
        raise ReslabError(f"int8 backend {name} is not installed (pip install {extra})", params=("backend",))
    return name


def calibration_batches(images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`images` in batches of exactly `batch_size` (the exported graph's static batch); a short last
    batch is filled from the start, so no zero images skew the observed ranges."""
    if images.dim() != 4 or images.shape[0] < 1:
        raise ReslabError(
            f"calibration must be a non-empty (N, C, H, W) batch of images, got shape {list(images.shape)}",
            params=("calibration",),
        )
    batches = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size]
        while batch.shape[0] < batch_size:
            batch = torch.cat([batch, images[: batch_size - batch.shape[0]]])
        batches.append(batch.float().contiguous())
    return batches


def _unshare_activations(gm: torch.fx.GraphModule) -> None:
    """Each call of a shared activation module becomes its own source partition (module docstring)."""
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.meta.get("source_fn_stack") is not None:
            continue
        stack = node.meta.get("nn_module_stack")
        if not stack:
            continue
        _fqn, cls = list(stack.values())[-1]
        # Depending on the export path the class is recorded as the type or as its qualified name.
        match = next((a for a in _ACTIVATIONS if cls is a or cls == f"{a.__module__}.{a.__qualname__}"), None)
        if match is not None:
            node.meta["source_fn_stack"] = [(node.name, match)]


def torchao_quantize(
    model: nn.Module, example: torch.Tensor, calibration: torch.Tensor, dynamic_shapes: Any = None
) -> nn.Module:
    """The converted (reference-quantized) graph module of a BN-folded `model`; static batch size
    example.shape[0] unless `dynamic_shapes` (torch.export's) says otherwise. Run it under torch.compile
    with freezing to get int8 kernels."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with torch.no_grad():
        gm = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes).module()
        _unshare_activations(gm)
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(gm, quantizer)
        size = example.shape[0] if dynamic_shapes is None else max(example.shape[0], 32)
        for batch in calibration_batches(calibration, size):
            prepared(batch)
        converted = convert_pt2e(prepared)
    move_exported_model_to_eval(converted)
    # InferenceModel (and callers restoring a training flag) call .eval()/.train() on their modules.
    allow_exported_model_train_eval(converted)
    return converted


def openvino_quantize(
    model: nn.Module,
    example: torch.Tensor,
    calibration: torch.Tensor,
    threads: int | None = None,
    nncf_defaults: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An OpenVINO int8 compiled model (NNCF post-training quantization) as a tensor -> tensor callable.

    reslab's settings (nncf_defaults False): see _faithful_nncf_options."""
    import nncf
    import openvino as ov

    with torch.no_grad():
        program = torch.export.export(model, (example,))
    ov_model = ov.convert_model(program)
    batches = [b.numpy() for b in calibration_batches(calibration, example.shape[0])]
    nncf.set_log_level(logging.WARNING)
    # NNCF draws progress bars on stdout, which `--json` output owns.
    with contextlib.redirect_stdout(sys.stderr):
        options = {} if nncf_defaults else _faithful_nncf_options(nncf, ov_model)
        quantized = nncf.quantize(
            ov_model,
            nncf.Dataset(batches),
            subset_size=len(batches),  # NNCF counts dataset items: batches
            **options,
        )
    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
    compiled = ov.Core().compile_model(quantized, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        result = request.infer([x.numpy()], share_inputs=True)
        return torch.from_numpy(result[0].copy())

    return run


def _faithful_nncf_options(nncf: Any, ov_model: Any) -> dict[str, Any]:
    """Full bias correction; the stem convolution and the classifier (MatMul) left in fp32. NNCF's default
    overflow fix stores the first layer's weights in half the int8 range. On a Fashion-MNIST resnet8
    (10,000 test images, docs/speed.md) top-1 agreement with fp32 was 94.6% with NNCF's defaults, 98.7%
    with bias correction and the classifier alone, 99.61% with the stem too; speed unchanged."""
    convolutions = (op for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution")
    stem = next(convolutions).get_friendly_name()
    scope = nncf.IgnoredScope(types=["MatMul"], names=[stem])
    return {"fast_bias_correction": False, "ignored_scope": scope}


@dataclass
class Int8Settings:
    """backend: auto | torchao | openvino. compile: torchao only (openvino always compiles)."""

    backend: str = "auto"
    compile: bool = True


def quantize_for_inference(
    model: nn.Module,
    example: torch.Tensor,
    calibration: torch.Tensor | None,
    device: torch.device,
    settings: Int8Settings,
) -> nn.Module:
    """The int8 InferenceModel (reslab.infer): fp32 NCHW in, fp32 logits out, any batch size."""
    precision = int8_precision(device)
    if calibration is None:
        raise ReslabError(
            "precision int8 needs calibration images (a few hundred real inputs, normalised as the model "
            "expects)",
            params=("calibration",),
        )
    backend = resolve_backend(settings.backend)
    if tuple(calibration.shape[1:]) != tuple(example.shape[1:]):
        raise ReslabError(
            f"calibration images are {list(calibration.shape[1:])} but the model's inputs are "
            f"{list(example.shape[1:])}",
            params=("calibration",),
        )
    folded = fold_batchnorm(model).cpu().float()
    example = example.detach().cpu().float().contiguous()
    calibration = calibration.detach().cpu()
    if backend == "openvino":
        runner: nn.Module = _CallableModule(openvino_quantize(folded, example, calibration))
        wrapper = Int8InferenceModel(runner, precision, device, example.shape[0], backend)
        wrapper.info.compiled = True
        return wrapper
    converted = torchao_quantize(folded, example, calibration)
    wrapper = Int8InferenceModel(converted, precision, device, example.shape[0], backend)
    if settings.compile:
        wrapper.enable_compile(example)
    return wrapper


class _CallableModule(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class Int8InferenceModel(InferenceModel):
    """InferenceModel whose graph has a static batch size: every call runs in chunks of that size, the
    last zero-padded, compiled or not (the uncompiled graph is the reference-quantized fp32 graph)."""

    def __init__(
        self, prepared: nn.Module, precision: Precision, device: torch.device, batch_size: int, backend: str
    ) -> None:
        super().__init__(prepared, precision, device, batch_size)
        self.info.backend = backend

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32).contiguous()
        if x.shape[0] == 0:
            return self(x.new_zeros((1, *x.shape[1:])))[:0]
        if self.__dict__["_compiled"] is None:
            self.__dict__["_compiled"] = self.model
            try:
                return self._run_compiled(x)
            finally:
                self.__dict__["_compiled"] = None
        return self._run_compiled(x)

    def enable_compile(self, example: torch.Tensor) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            super().enable_compile(example)
        if self.info.fallback_reason:
            warnings.warn(
                f"int8 compile failed, running the reference-quantized graph (slow): "
                f"{self.info.fallback_reason}",
                stacklevel=2,
            )


def calibration_from_split(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], count: int, seed: int = 0
) -> torch.Tensor:
    """`count` images drawn (seeded) from uint8 (N, C, H, W) `images`, normalised as training did."""
    from .data import normalise

    pick = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:count]
    return normalise(images[pick], _stat(mean), _stat(std))


def calibration_from_folder(
    folder: str,
    read: Callable[[str], torch.Tensor],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    count: int,
) -> torch.Tensor:
    """Up to `count` image files under `folder` (a seeded sample when there are more), each read by
    `read` (the model's eval transform: uint8 (C, H, W)), normalised."""
    from .data.inputs import find_images

    if not Path(folder).is_dir():
        raise ReslabError(f"calibration folder {folder!r} is not a folder", params=("calibration",))
    paths = find_images([folder])
    pick = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))[:count].tolist()
    images = torch.stack([read(str(paths[i])) for i in sorted(pick)])
    return calibration_from_split(images, mean, std, count)


def parse_calibration(spec: str | None) -> str | None:
    """None for the default ('data'), else the folder of 'folder:DIR'; anything else is an error."""
    if spec is None or spec == "data":
        return None
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return spec[len("folder:") :]
    raise ReslabError(f"calibration must be 'data' or folder:DIR, got {spec!r}", params=("calibration",))


def _stat(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def classifier_calibration(
    classifier: ImageClassifier, count: int = DEFAULT_CALIBRATION_IMAGES
) -> torch.Tensor:
    """Calibration images for an ImageClassifier: its `calibration` spec, by default the training split
    of the data its checkpoint names (pretrained weights have none: give a folder)."""
    from .checkpoint import load_checkpoint

    folder = parse_calibration(classifier.calibration)
    mean, std = classifier.mean, classifier.std
    if folder is not None:
        return calibration_from_folder(folder, classifier.transform.read, mean, std, count)
    if not Path(classifier.source).exists():
        raise ReslabError(
            f"{classifier.source} has no training data of its own to calibrate int8 on; give "
            "--calibration folder:DIR",
            params=("calibration",),
        )
    payload = load_checkpoint(classifier.source)
    return checkpoint_calibration(payload, mean, std, count)


def checkpoint_calibration(
    payload: dict[str, Any],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    count: int = DEFAULT_CALIBRATION_IMAGES,
    bundle: DataBundle | None = None,
) -> torch.Tensor:
    """`count` training images of the data a checkpoint was trained on (same spec and split seed);
    `bundle`: that data, already loaded."""
    from .data.loaders import split_images
    from .evaluate import checkpoint_data

    if bundle is None:
        bundle = checkpoint_data(payload)
    return calibration_from_split(split_images(bundle.train, bundle.evaluation, count), mean, std, count)


def eval_calibration(spec: str | None, payload: dict[str, Any], bundle: DataBundle | None) -> torch.Tensor:
    """`reslab eval`'s calibration: a folder read with the checkpoint's own input transform, or the
    checkpoint's training data (`bundle` when the evaluated data is that data)."""
    from .data.eval_transform import EvalTransform

    info = payload["data"]
    mean, std = tuple(info["mean"]), tuple(info["std"])
    folder = parse_calibration(spec)
    if folder is not None:
        read = EvalTransform.of_data_info(info).read
        return calibration_from_folder(folder, read, mean, std, DEFAULT_CALIBRATION_IMAGES)
    return checkpoint_calibration(payload, mean, std, bundle=bundle)

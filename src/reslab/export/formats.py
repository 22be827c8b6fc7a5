"""The serving formats: how each is written from a model and read back the way a server reads it.

ONNX goes through `torch.onnx.export`'s torch.export-based ("dynamo") exporter, PyTorch's supported path
since 2.9: it captures the exact graph torch.export sees and translates it with onnxscript. That exporter
only emits opset 18 and later (for lower requests it silently keeps 18), so an explicit older opset goes
through the deprecated TorchScript-based exporter instead, which is still the only way to get one.

safetensors holds only the weights (the fp32 state_dict, no code, nothing runs on load); a config.json
beside it (written by core) says which ResNet to build. It is read back with safetensors.torch.load_file
into a fresh model built from that config.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ReslabError

# FORMATS: the programs a server runs as they are; WEIGHTS_FORMATS: weights only, for a model built
# from the config.json beside them; ALL_FORMATS: what export accepts.
FORMATS = ("onnx", "torchscript", "exported-program")
WEIGHTS_FORMATS = ("safetensors",)
ALL_FORMATS = FORMATS + WEIGHTS_FORMATS
SUFFIXES = {
    "onnx": ".onnx",
    "torchscript": ".ts.pt",
    "exported-program": ".pt2",
    "safetensors": ".safetensors",
}

# torch's own default for its exporter (torch.onnx._constants.ONNX_DEFAULT_OPSET); onnxruntime has run it
# since 1.17. The range is what this torch can emit: the dynamo exporter from 18, the TorchScript one below.
DEFAULT_OPSET = 20
MIN_OPSET, DYNAMO_MIN_OPSET, MAX_OPSET = 7, 18, 23
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Each file carries what a server needs to feed it (preprocessing, class names) under this key: ONNX
# metadata_props, a TorchScript extra file, an ExportedProgram extra file, a safetensors header entry.
METADATA_KEY = "reslab.json"
# safetensors: the ResNetConfig dict in the header too, so the file alone can rebuild its model; the
# config.json written beside it (SAFETENSORS_CONFIG) holds the same plus the reslab.json metadata.
MODEL_CONFIG_KEY = "reslab.model_config"
SAFETENSORS_NAME, SAFETENSORS_CONFIG = "model.safetensors", "config.json"
SAFETENSORS_CONFIG_FORMAT = "reslab-safetensors"

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Written:
    """What a writer reports back about the file it produced."""

    exporter: str
    opset: int | None = None
    note: str = ""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporters warn about their own deprecations and tracing; none of that is news to the user."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


def _register_quantized_ops() -> None:
    """An int8 .pt2 (reslab.export.int8) calls torch.ops.quantized_decomposed.*, which torch registers
    only when this module is imported; torch.export.load cannot resolve them otherwise."""
    with contextlib.suppress(ImportError), _quiet():
        import torch.ao.quantization.fx._decomposed  # noqa: F401


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ReslabError(
            f"ONNX export needs {', '.join(missing)}: install them with pip install 'reslab[export]'"
        )


def check_opset(opset: int | None) -> int:
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ReslabError(f"ONNX opset {opset} is out of range; this torch exports {MIN_OPSET}..{MAX_OPSET}")
    return opset


def write_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, opset: int, metadata: str
) -> Written:
    _require_onnx()
    import onnx

    with _quiet():
        if opset >= DYNAMO_MIN_OPSET:
            dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
            program = torch.onnx.export(
                model,
                (example,),
                None,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
            program.save(str(path), external_data=False)  # one self-contained file
            exporter = "torch.onnx.export (dynamo, onnxscript)"
        else:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
            exporter = "torch.onnx.export (TorchScript-based, for opset < 18)"
    proto = onnx.load(str(path), load_external_data=False)
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ReslabError(f"the ONNX exporter wrote opset {written} instead of the requested {opset}")
    return Written(exporter=exporter, opset=written)


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, metadata: str) -> Written:
    with _quiet():
        try:
            module = torch.jit.script(model)
            written = Written(exporter="torch.jit.script")
        except Exception as exc:  # a model scripting cannot read still traces, at a fixed input size
            module = torch.jit.trace(model, (example,))
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            written = Written(exporter="torch.jit.trace", note=f"scripting failed ({first}); traced instead")
        torch.jit.save(module, str(path), _extra_files={METADATA_KEY: metadata})
    return written


def write_exported_program(
    model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, metadata: str
) -> Written:
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with _quiet():
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, str(path), extra_files={METADATA_KEY: metadata})
    return Written(exporter="torch.export.export")


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ReslabError("safetensors export needs a reslab ResNet (its config says what to build)")
    return config.to_dict()


def write_safetensors(model: nn.Module, path: Path, metadata: str) -> Written:
    """The fp32 state_dict (contiguous, unshared tensors) with the reslab metadata in the header."""
    import safetensors
    from safetensors.torch import save_file

    state = {
        key: value.detach()
        .to("cpu", torch.float32 if value.is_floating_point() else value.dtype)
        .clone(memory_format=torch.contiguous_format)
        for key, value in model.state_dict().items()
    }
    header = {"format": "pt", METADATA_KEY: metadata, MODEL_CONFIG_KEY: json.dumps(_model_config(model))}
    save_file(state, str(path), metadata=header)
    return Written(exporter=f"safetensors {safetensors.__version__} save_file (fp32 state_dict)")


def safetensors_config(model: nn.Module, metadata: dict[str, Any], weights_name: str) -> dict[str, Any]:
    """config.json beside a model.safetensors: what to build (model_name, model_config) and how to feed
    it (mean, std, class_names, ...: the reslab.json metadata)."""
    return {
        "format": SAFETENSORS_CONFIG_FORMAT,
        "version": 1,
        **metadata,
        "model_config": _model_config(model),
        "weights": weights_name,
    }


def write(
    fmt: str,
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_batch: bool,
    opset: int | None,
    metadata: dict[str, Any],
) -> Written:
    text = json.dumps(metadata)
    if fmt == "onnx":
        return write_onnx(model, example, path, dynamic_batch, check_opset(opset), text)
    if fmt == "torchscript":
        return write_torchscript(model, example, path, text)
    if fmt == "safetensors":
        return write_safetensors(model, path, text)
    return write_exported_program(model, example, path, dynamic_batch, text)


def _safetensors_header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def read_metadata(path: str | Path, fmt: str | None = None) -> dict[str, Any]:
    """The reslab metadata an exported file carries (empty if it has none); fmt defaults from the name."""
    path = Path(path)
    suffixes = {".onnx": "onnx", ".pt2": "exported-program", ".safetensors": "safetensors"}
    fmt = fmt or suffixes.get(path.suffix, "torchscript")
    text = ""
    if fmt == "safetensors":
        text = _safetensors_header(path).get(METADATA_KEY, "")
    elif fmt == "onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), "")
    else:
        files = {METADATA_KEY: ""}
        _register_quantized_ops()
        with _quiet():
            if fmt == "exported-program":
                torch.export.load(str(path), extra_files=files)
            else:
                torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        text = files[METADATA_KEY]
        text = text.decode() if isinstance(text, bytes) else text
    return json.loads(text) if text else {}


def load_runner(fmt: str, path: Path) -> tuple[Runner, str]:
    """Load the file as a serving stack would, independent of the model object; (run(x) -> logits, name)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

        return run_onnx, f"onnxruntime {ort.__version__} InferenceSession (CPUExecutionProvider)"
    if fmt == "torchscript":
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
        return module, "torch.jit.load"
    if fmt == "safetensors":
        import safetensors
        from safetensors.torch import load_file

        from ..models import ResNetConfig, build_model

        state = load_file(str(path), device="cpu")
        header = _safetensors_header(path)
        if MODEL_CONFIG_KEY not in header:
            raise ValueError(f"the header has no {MODEL_CONFIG_KEY}")
        fresh = build_model(ResNetConfig.from_dict(json.loads(header[MODEL_CONFIG_KEY])))
        fresh.load_state_dict(state)  # strict: every tensor, nothing else
        fresh.eval()
        return fresh, (
            f"safetensors {safetensors.__version__} load_file into a fresh {fresh.config.name or 'ResNet'} "
            "built from its config"
        )
    _register_quantized_ops()
    with _quiet():
        program = torch.export.load(str(path))
    return program.module(), "torch.export.load(...).module()"

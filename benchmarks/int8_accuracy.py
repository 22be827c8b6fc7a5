"""int8 against fp32 on real test images: top-1 of each, agreement, max relative logit error.

    python benchmarks/int8_accuracy.py RUN_DIR_OR_CHECKPOINT [--backends torchao,openvino,onnxruntime]
        [--test-folder DIR --image-size N --calibration folder:DIR] [--limit N] [--threads 2]

Backends: torchao and openvino are `optimize_for_inference(precision="int8", backend=...)`; onnxruntime
is the int8 ONNX file `reslab export --precision int8` writes (reslab.export.int8.write_int8_onnx, QDQ),
run in an ONNX Runtime session.

Test images: the checkpoint's own test split by default; `--test-folder DIR` reads class sub-folders of
image files instead (labels by folder name = the checkpoint's class names) at `--image-size` px (default:
the checkpoint's), e.g. a model trained at 112 px checked on 224 px images. Calibration: 256 images of
the checkpoint's training split (as `reslab eval --precision int8`), or `--calibration folder:DIR` read
at the test size. Prints one JSON line per backend.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from reslab.data import load_data, normalise
from reslab.data.eval_transform import EvalTransform
from reslab.data.inputs import find_images
from reslab.evaluate import checkpoint_and_model, trained_seed
from reslab.infer import optimize_for_inference
from reslab.quantize import (
    DEFAULT_CALIBRATION_IMAGES,
    calibration_from_folder,
    checkpoint_calibration,
    parse_calibration,
)


def folder_test(folder: str, read: EvalTransform, class_names: list[str], limit: int):
    """uint8 images and labels from DIR/<class name>/*; a seeded sample of `limit` when there are more."""
    paths = [p for p in find_images([folder]) if p.parent.name in class_names]
    pick = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))[:limit]
    chosen = [paths[i] for i in sorted(pick.tolist())]
    images = torch.stack([read.read(str(p)) for p in chosen])
    labels = torch.tensor([class_names.index(p.parent.name) for p in chosen])
    return images, labels


def test_and_calibration(args: argparse.Namespace, payload: dict[str, Any]):
    """(normalised test images, labels, normalised calibration images, description of the test set)."""
    info = payload["data"]
    mean, std = tuple(info["mean"]), tuple(info["std"])
    stat = [torch.tensor(v).view(1, -1, 1, 1) for v in (mean, std)]
    size = args.image_size or info["image_size"][0]
    read = EvalTransform.fit(info["in_chans"], (size, size))
    folder = parse_calibration(args.calibration)
    bundle = None
    if args.test_folder:
        images, labels = folder_test(args.test_folder, read, info["class_names"], args.limit)
        where = f"folder:{args.test_folder} at {size} px"
    else:
        bundle = load_data(info["spec"], seed=trained_seed(payload))
        images, labels = bundle.test.images[: args.limit], bundle.test.labels[: args.limit]
        where = f"{info['spec']} test split"
    if folder is not None:
        calibration = calibration_from_folder(folder, read.read, mean, std, DEFAULT_CALIBRATION_IMAGES)
    else:
        calibration = checkpoint_calibration(payload, mean, std, bundle=bundle)
    if tuple(calibration.shape[1:]) != tuple(images.shape[1:]):
        raise SystemExit(
            f"calibration images are {tuple(calibration.shape[1:])}; give --calibration folder:DIR"
        )
    return normalise(images, *stat), labels, calibration, where


def onnxruntime_int8(model: torch.nn.Module, example: torch.Tensor, calibration: torch.Tensor):
    """The file `reslab export --precision int8 --dynamic-batch` writes, in an ONNX Runtime session."""
    import onnxruntime as ort

    from reslab.export.formats import DEFAULT_OPSET
    from reslab.export.int8 import write_int8_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "int8.onnx"
        write_int8_onnx(model, example[:2], path, True, DEFAULT_OPSET, "{}", calibration)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def build(backend: str, model: torch.nn.Module, example: torch.Tensor, calibration: torch.Tensor):
    if backend == "onnxruntime":
        return onnxruntime_int8(model, example, calibration)
    return optimize_for_inference(model, example, precision="int8", calibration=calibration, backend=backend)


def logits(run, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([run(b).float() for b in images.split(batch_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--backends", default="torchao,openvino,onnxruntime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--test-folder", help="class sub-folders of test images (default: the test split)")
    parser.add_argument("--image-size", type=int, help="read --test-folder images at this size")
    parser.add_argument("--calibration", help="'data' (default) or folder:DIR")
    parser.add_argument("--limit", type=int, default=10_000, help="at most this many test images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    payload, model = checkpoint_and_model(args.checkpoint, torch.device("cpu"))
    test, labels, calibration, where = test_and_calibration(args, payload)
    fp32 = logits(model, test, args.batch_size)
    for backend in args.backends.split(","):
        start = time.perf_counter()
        run = build(backend, model, test[: args.batch_size], calibration)
        prepare = time.perf_counter() - start
        int8 = logits(run, test, args.batch_size)
        rel = (int8 - fp32).abs().amax(1) / fp32.abs().amax(1).clamp_min(1e-12)
        row = {
            "checkpoint": payload["path"],
            "model": payload["model_name"],
            "data": payload["data"]["spec"],
            "test": where,
            "n_test": len(labels),
            "backend": backend,
            "top1_fp32": round(float((fp32.argmax(1) == labels).float().mean()), 4),
            "top1_int8": round(float((int8.argmax(1) == labels).float().mean()), 4),
            "top1_agreement": round(float((int8.argmax(1) == fp32.argmax(1)).float().mean()), 4),
            "max_relative_logit_error": round(float(rel.max()), 4),
            "prepare_seconds": round(prepare, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

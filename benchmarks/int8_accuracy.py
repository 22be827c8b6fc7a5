"""int8 against fp32 on a checkpoint's real test split: top-1 of each, agreement, max relative logit error.

    python benchmarks/int8_accuracy.py RUN_DIR_OR_CHECKPOINT [--backends torchao,openvino] [--threads 2]

Calibration: 256 images of the checkpoint's own training split (reslab.quantize.checkpoint_calibration),
as `reslab eval --precision int8` does. Prints one JSON line per backend.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from reslab.data import load_data, normalise
from reslab.evaluate import checkpoint_and_model, trained_seed
from reslab.infer import compare_logits, optimize_for_inference
from reslab.quantize import checkpoint_calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--backends", default="torchao,openvino")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    payload, model = checkpoint_and_model(args.checkpoint, torch.device("cpu"))
    info = payload["data"]
    bundle = load_data(info["spec"], seed=trained_seed(payload))
    mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["std"]).view(1, -1, 1, 1)
    test, labels = normalise(bundle.test.images, mean, std), bundle.test.labels
    calibration = checkpoint_calibration(payload, tuple(info["mean"]), tuple(info["std"]), bundle=bundle)
    example = test[: args.batch_size]
    with torch.no_grad():
        fp32 = torch.cat([model(b) for b in test.split(args.batch_size)]).argmax(1)
    for backend in args.backends.split(","):
        start = time.perf_counter()
        fast = optimize_for_inference(
            model, example, precision="int8", calibration=calibration, backend=backend
        )
        prepare = time.perf_counter() - start
        int8 = torch.cat([fast(b) for b in test.split(args.batch_size)]).argmax(1)
        report = compare_logits(model, fast, test, batch_size=args.batch_size)
        row = {
            "checkpoint": payload["path"],
            "model": payload["model_name"],
            "data": info["spec"],
            "n_test": len(labels),
            "backend": backend,
            "top1_fp32": round(float((fp32 == labels).float().mean()), 4),
            "top1_int8": round(float((int8 == labels).float().mean()), 4),
            "top1_agreement": round(report["top1_agreement"], 4),
            "max_relative_logit_error": round(report["max_relative_logit_error"], 4),
            "prepare_seconds": round(prepare, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

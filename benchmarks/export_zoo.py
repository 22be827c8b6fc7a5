"""Export every kind of zoo model to ONNX, TorchScript and torch.export and check each round trip.

Run by hand (minutes on a 2-core CPU): python benchmarks/export_zoo.py [--quick]
Untrained weights, with BatchNorm running statistics and scales drawn at random (as training leaves them,
not at their 0/1 init), on a seeded random batch at 32x32 (CIFAR) or 64x64 (ImageNet). Prints, per model
and format, the max abs logit difference, the largest logit, and their ratio: fp32 kernels that sum in a
different order differ by about 1e-6 of the largest logit, which is why `--rtol` exists.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reslab.export import FORMATS, export_model
from reslab.export.formats import SUFFIXES
from reslab.models import create_model

CASES: list[tuple[str, dict]] = [
    ("resnet20", {}),
    ("resnet20", {"shortcut": "B"}),
    ("resnet20", {"shortcut": "C"}),
    ("resnet20", {"order": "bn_after_add"}),
    ("resnet20", {"order": "relu_before_add"}),
    ("resnet20", {"order": "relu_preact"}),
    ("resnet20", {"order": "pre"}),
    ("plain20", {}),
    ("resnet20", {"zero_init_residual": True}),
    ("preact_resnet164", {}),
    ("resnet18", {}),
    ("resnet34", {"shortcut": "A"}),
    ("resnet50", {}),
    ("resnet50_v1", {}),
    ("preact_resnet18", {}),
    ("plain_resnet50", {}),
    ("resnet18", {"in_chans": 1, "num_classes": 7}),
]
QUICK = {0, 6, 7, 10, 12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five representative models only")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    out = Path(tempfile.mkdtemp())
    print(
        f"{'model':18s} {'overrides':30s} {'format':17s} {'max|diff|':>9s} {'max|logit|':>10s} {'ratio':>7s}  s"
    )
    for index, (name, overrides) in enumerate(CASES):
        if args.quick and index not in QUICK:
            continue
        model = create_model(name, **overrides).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_var.uniform_(0.5, 1.5, generator=generator)
                    module.weight.uniform_(0.5, 1.5, generator=generator)
        size = 64 if model.config.family == "imagenet" else 32
        x = torch.randn(8, model.config.in_chans, size, size, generator=generator)
        for fmt in FORMATS:
            start = time.perf_counter()
            report = export_model(
                model,
                x[:2],
                fmt,
                out / f"m{SUFFIXES[fmt]}",
                dynamic_batch=True,
                check_batch=x,
                batch_sizes=(1, 8),
            )
            ratio = report.max_abs_diff / report.max_abs_logit
            print(
                f"{name:18s} {str(overrides):30s} {fmt:17s} {report.max_abs_diff:9.1e} "
                f"{report.max_abs_logit:10.3g} {ratio:7.0e}  {time.perf_counter() - start:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

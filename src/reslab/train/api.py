"""The public training API: `train`, `evaluate`, `predict` (the CLI calls exactly these)."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ..data import DataBundle, load_data, normalise
from ..errors import ReslabError
from ..models import create_model
from ..models.zoo import resolve_config
from ..precision import resolve_device, resolve_precision
from .checkpoint import load_checkpoint, model_from_checkpoint
from .distributed import DistContext, convert_sync_batchnorm, distributed_config, session, wrap_ddp
from .engine import Trainer, steps_per_epoch
from .evaluation import evaluate_split
from .finetune import load_finetune_weights
from .lr_scaling import scaled_lr
from .progress import RunProgress
from .recipes import TrainConfig, resolve_recipe
from .run_dir import default_run_dir, plot_curves, write_json


@dataclass
class RunResult:
    run_dir: Path
    test: dict[str, Any]
    best_val_error: float
    metrics: list[dict[str, Any]]
    config: dict[str, Any]


def _version() -> str:
    from .. import __version__

    return __version__


def _resume_checkpoint(resume: str | Path) -> dict[str, Any]:
    path = Path(resume)
    if path.is_dir():
        if not (path / "last.pt").is_file():
            raise ReslabError(f"--resume {str(path)!r}: no last.pt in that folder; is it a reslab run?")
        path = path / "last.pt"
    payload = load_checkpoint(path)
    for key in ("train_config", "optimizer", "scheduler", "rng", "epoch"):
        if key not in payload:
            raise ReslabError(f"--resume {str(path)!r}: it holds weights only, not a training state")
    return payload


def _load_bundle(spec: str, seed: int, download: bool, device: torch.device) -> DataBundle:
    bundle = load_data(spec, seed=seed, download=download)
    bundle.train, bundle.val, bundle.test = (
        bundle.train.to(device),
        bundle.val.to(device),
        bundle.test.to(device),
    )
    return bundle


def train(
    model: str = "resnet20",
    data: str = "digits",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    warmup_steps: int | None = None,
    weight_decay: float | None = None,
    precision: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    recipe: str = "default",
    quiet: bool = False,
    compile: bool = False,
    model_options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    download: bool = False,
    threads: int | None = None,
    sync_bn: bool = False,
    lr_scaling: str | None = None,
    console: Console | None = None,
) -> RunResult:
    """Train `model` on `data`; write the run directory; evaluate the test set once with the best-on-
    validation weights. With `resume`, every setting comes from the checkpoint and the run continues.
    threads: CPU threads for this run (None: 1 for images of at most 16x16 pixels, else torch's default).
    Under torchrun (RANK/WORLD_SIZE set) it trains with DistributedDataParallel: batch_size is the global
    batch, sync_bn makes BN statistics span it, lr_scaling ("none"/"linear") says how lr follows a changed
    global batch; only rank 0 writes the run directory and prints."""
    if console is None:
        # Never wrap or truncate when the output goes to a file (the same rule as the CLI's console).
        console = Console(width=None if sys.stdout.isatty() else 200)
    saved_threads = torch.get_num_threads()
    try:
        with session() as dist_ctx:
            try:
                return _train(**{k: v for k, v in locals().items() if k not in ("saved_threads",)})
            except BaseException as exc:
                dist_ctx.fail(exc)  # a rank failing during setup meets the healthy ones at the gate
                raise
    finally:
        torch.set_num_threads(saved_threads)


def cpu_threads(requested: int | None, image_size: tuple[int, int], device: torch.device) -> int:
    """Threads for a CPU run. Tiny images make per-layer work so small that a second OpenMP thread
    buys little on an idle machine and costs 10-60x on a busy one (measured on digits, see README)."""
    if requested is not None:
        if requested < 1:
            raise ReslabError(f"--threads must be at least 1, got {requested}")
        return requested
    if device.type == "cpu" and image_size[0] * image_size[1] <= 16 * 16:
        return 1
    return torch.get_num_threads()


def _train(
    model: str,
    data: str,
    *,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    schedule: str | None,
    warmup_steps: int | None,
    weight_decay: float | None,
    precision: str,
    seed: int,
    out: str | Path | None,
    resume: str | Path | None,
    device: str,
    recipe: str,
    quiet: bool,
    compile: bool,
    model_options: dict[str, Any] | None,
    weights: str | Path | None,
    download: bool,
    threads: int | None,
    sync_bn: bool,
    lr_scaling: str | None,
    console: Console,
    dist_ctx: DistContext,
) -> RunResult:
    dist_ctx.begin_setup()
    quiet = quiet or not dist_ctx.is_main
    payload = None
    lr_record: dict[str, Any] = {}
    if resume is not None:
        payload = dist_ctx.on_main(lambda: _resume_checkpoint(resume))
        run_config = payload["train_config"]
        run_dir = Path(payload["path"]).parent
        model, data, seed = run_config["model"], run_config["data"], run_config["seed"]
        threads = threads or run_config["environment"].get("threads")
        model_options, weights = run_config["model_options"], None
        compile, download = run_config["compile"], run_config["download"]
        train_config = TrainConfig.from_dict(run_config["train"])
        dev = dist_ctx.device(resolve_device(run_config["device"]))
        sync_bn = run_config.get("distributed", {}).get("sync_bn", False)
        lr_record = run_config.get("distributed", {}).get("lr_scaling", {})
        prec = resolve_precision(run_config["precision"]["precision"], dev)
    else:
        resolve_config(model)  # an unknown name fails before any data is read
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise ReslabError(f"--out {str(out)!r} is a file; give a folder for the run directory")
        dev = dist_ctx.device(resolve_device(device))
        prec = resolve_precision(precision, dev)
        train_config = resolve_recipe(
            recipe,
            model_depth=resolve_config(model).depth,
            train_size=1,  # replaced below once the data is known
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
        )
    bundle = _load_bundle(data, seed, download, dev)
    if payload is None:
        lr, lr_record = scaled_lr(
            recipe,
            model_depth=resolve_config(model).depth,
            train_size=len(bundle.train),
            batch_size=batch_size,
            lr=lr,
            rule=lr_scaling,
        )
        train_config = resolve_recipe(
            recipe,
            model_depth=resolve_config(model).depth,
            train_size=len(bundle.train),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
        )
        run_dir = Path(out) if out is not None else default_run_dir(model, data)
        if dist_ctx.is_main and (run_dir / "last.pt").exists():
            raise ReslabError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick --out"
            )

    torch.set_num_threads(cpu_threads(threads, bundle.image_size, dev))
    torch.manual_seed(seed)
    options = dict(model_options or {})
    net = create_model(model, in_chans=bundle.in_chans, num_classes=bundle.num_classes, **options)
    if weights is not None:
        load_finetune_weights(net, weights)
    net = net.to(dev)
    if sync_bn and dist_ctx.distributed:
        net = convert_sync_batchnorm(net, dev)
    if prec.channels_last:
        net = net.to(memory_format=torch.channels_last)
    dist_info = distributed_config(dist_ctx, train_config.batch_size, sync_bn, lr_record)

    if payload is None:
        run_config = {
            "model": model,
            "model_options": options,
            "model_config": net.config.to_dict(),
            "data": data,
            "data_info": bundle.info(),
            "seed": seed,
            "device": str(dev),
            "precision": prec.to_dict(),
            "compile": compile,
            "weights": str(weights) if weights is not None else None,
            "download": download,
            "train": train_config.to_dict(),
            "steps_per_epoch": steps_per_epoch(len(bundle.train), train_config.batch_size),
            "run_dir": str(run_dir),
            "environment": {
                "reslab": _version(),
                "torch": str(torch.__version__),
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            },
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "distributed": dist_info,
        }
        if dist_ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", run_config)
    elif run_config.get("distributed", {}).get("world_size", 1) != dist_ctx.world_size:
        run_config = {**run_config, "distributed": dist_info}  # resumed on another number of processes
        if dist_ctx.is_main:
            write_json(run_dir / "config.json", run_config)

    # Setup is over on every rank (or every rank stops here); from now on the ranks work in step.
    dist_ctx.agree()
    run_dir = Path(dist_ctx.broadcast_object(str(run_dir)))
    train_net = wrap_ddp(net, dist_ctx, dev)
    if compile:
        train_net = torch.compile(train_net)

    trainer = Trainer(
        net,
        bundle,
        train_config,
        prec,
        dev,
        run_dir,
        seed=seed,
        run_config=run_config,
        train_model=train_net,
        dist=dist_ctx,
    )
    if payload is not None:
        trainer.restore(payload)
    progress = RunProgress(console, trainer.epochs, quiet=quiet)
    if not quiet:
        what = "training" if payload is None else f"resuming after epoch {payload['epoch']}: training"
        console.print(
            f"{what} {model} on {data} ({len(bundle.train)} train / {len(bundle.val)} val / "
            f"{len(bundle.test)} test, {bundle.num_classes} classes) for {trainer.epochs} epochs "
            f"({trainer.total_steps} steps of {train_config.batch_size}"
            f"{_split_text(dist_ctx, train_config.batch_size, sync_bn)}) on {dev}, {prec.name}"
            f"{' + channels_last' if prec.channels_last else ''}; recipe {train_config.recipe}, "
            f"{train_config.schedule} lr {train_config.lr:g} -> {run_dir}",
            highlight=False,
        )
    try:
        with progress:
            state = trainer.fit(progress)
    finally:
        if trainer.state.metrics and dist_ctx.is_main:
            plot_curves(run_dir / "curves.png", trainer.state.metrics, title=f"{model} on {data}")

    # Rank 0 reads best.pt (other machines need not share its disk) and sends the weights to every rank;
    # each rank evaluates its shard of the test set and the sums are reduced.
    best = dist_ctx.on_main(
        lambda: {k: v for k, v in load_checkpoint(run_dir / "best.pt").items() if k in ("model", "epoch")}
    )
    net.load_state_dict(best["model"])
    result = evaluate_split(
        net,
        dist_ctx.shard(bundle.test),
        bundle.mean,
        bundle.std,
        prec,
        bundle.num_classes,
        reduce=dist_ctx.all_reduce_sum if dist_ctx.distributed else None,
    )
    result.pop("confusion")
    test = {**result, "best_epoch": best["epoch"]}
    if not dist_ctx.is_main:
        return RunResult(run_dir, test, state.best_val_error, list(state.metrics), run_config)
    write_json(run_dir / "test.json", test)
    console.print(
        f"test (once, best-on-validation weights of epoch {best['epoch']}): "
        f"loss {test['loss']:.4f}  accuracy {100 * test['accuracy']:.2f}%  error {100 * test['error']:.2f}%  "
        f"n {test['n']}  -> {run_dir}",
        highlight=False,
    )
    return RunResult(run_dir, test, state.best_val_error, list(state.metrics), run_config)


def _split_text(dist_ctx: DistContext, global_batch: int, sync_bn: bool) -> str:
    if not dist_ctx.distributed:
        return ""
    per_rank = global_batch // dist_ctx.world_size
    bn = "SyncBN" if sync_bn else "per-rank BN"
    return f" = {dist_ctx.world_size} processes x {per_rank}, DDP over {dist_ctx.backend}, {bn}"


def _checkpoint_and_model(
    checkpoint: str | Path, dev: torch.device
) -> tuple[dict[str, Any], torch.nn.Module]:
    payload = load_checkpoint(checkpoint)
    if "data" not in payload or "class_names" not in payload.get("data", {}):
        raise ReslabError(f"checkpoint {payload['path']!r} does not say what data it expects")
    model = model_from_checkpoint(payload).to(dev).eval()
    return payload, model


def _trained_precision(payload: dict[str, Any], dev: torch.device) -> str:
    """The precision the run trained (and validated) in, so `eval` repeats test.json; auto if it cannot."""
    name = payload.get("train_config", {}).get("precision", {}).get("precision", "auto")
    return name if name != "fp16" or dev.type == "cuda" else "auto"


EVAL_BATCH_SIZE = 500


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
    with the statistics training used."""
    if split not in ("train", "val", "test"):
        raise ReslabError(f"unknown split {split!r}; choose train, val or test")
    dev = resolve_device(device)
    payload, model = _checkpoint_and_model(checkpoint, dev)
    prec = resolve_precision(precision or _trained_precision(payload, dev), dev)
    info = payload["data"]
    seed = int(payload.get("train_config", {}).get("seed", 0))
    spec = data or info["spec"]
    bundle = _load_bundle(spec, seed, download, dev)
    if bundle.in_chans != info["in_chans"]:
        raise ReslabError(
            f"data {spec!r} has {bundle.in_chans} channel(s) but the model expects {info['in_chans']}"
        )
    if bundle.num_classes != len(info["class_names"]):
        raise ReslabError(
            f"data {spec!r} has {bundle.num_classes} classes but the model predicts {len(info['class_names'])}"
        )
    if fast:
        from ..infer import optimize_for_inference

        n = len(bundle.split(split))
        example = torch.zeros(
            (max(1, min(n, EVAL_BATCH_SIZE)), *bundle.split(split).images.shape[1:]), device=dev
        )
        model = optimize_for_inference(model, example, precision=prec.name, device=dev, workload=n)
    elif prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    mean, std = tuple(info["mean"]), tuple(info["std"])
    result = evaluate_split(
        model, bundle.split(split), mean, std, prec, bundle.num_classes, batch_size=EVAL_BATCH_SIZE
    )
    return {
        "checkpoint": payload["path"],
        "model": payload["model_name"],
        "data": spec,
        "split": split,
        **result,
        "class_names": list(info["class_names"]),
    }


def predict(
    checkpoint: str | Path, images: list[str | Path], topk: int = 5, device: str = "auto", fast: bool = True
) -> list[dict[str, Any]]:
    """Top-k classes with probabilities for each image file, read and normalised as training saw data.
    fast: reslab.infer.optimize_for_inference (never compiles for a handful of images)."""
    from ..data.images import read_image

    if topk < 1:
        raise ReslabError(f"--topk must be at least 1, got {topk}")
    if not images:
        raise ReslabError("no images given")
    dev = resolve_device(device)
    payload, model = _checkpoint_and_model(checkpoint, dev)
    info = payload["data"]
    names = list(info["class_names"])
    pixels = torch.stack([read_image(p, info["in_chans"], tuple(info["image_size"])) for p in images])
    mean = torch.tensor(info["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], dtype=torch.float32).view(1, -1, 1, 1)
    x = normalise(pixels, mean, std).to(dev)
    if fast:
        from ..infer import optimize_for_inference

        model = optimize_for_inference(model, x, device=dev, workload=len(x))
    with torch.inference_mode():
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

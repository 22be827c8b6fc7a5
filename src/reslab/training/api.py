"""The public training API: `train` (the CLI calls exactly this)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ..checkpoint import load_checkpoint
from ..data import load_data
from ..errors import ReslabError
from ..host_memory import host_allocator_tuned, tune_host_allocator
from ..models import create_model
from ..models.zoo import resolve_config
from ..precision import resolve_device, resolve_precision
from ..split_metrics import evaluate_split
from .distributed import DistContext, convert_sync_batchnorm, distributed_config, session, wrap_ddp
from .engine import Trainer
from .finetune import load_finetune_weights
from .progress import RunProgress
from .recipes import Overrides, TrainConfig, check_overrides, resolve_recipe, steps_per_epoch
from .run_dir import default_run_dir, plot_curves, write_json

__all__ = ["RunResult", "train"]

# What a resumed run takes from its checkpoint. Giving one of these with --resume is refused (the run
# would silently not use it); quiet, threads, download and the number of processes may change, since
# they change only speed and output, not what is trained.
RUN_SETTINGS = {
    "model": "--model",
    "data": "--data",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "schedule": "--schedule",
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
    "precision": "--precision",
    "seed": "--seed",
    "out": "--out",
    "device": "--device",
    "recipe": "--recipe",
    "compile": "--compile",
    "model_options": "model_options",
    "weights": "--weights",
    "sync_bn": "--sync-bn",
    "lr_scaling": "--lr-scaling",
    "label_smoothing": "--label-smoothing",
    "random_erase": "--random-erase",
}


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


def _refuse_run_settings(resume: str | Path, settings: dict[str, Any]) -> None:
    given = [
        flag
        for name, flag in RUN_SETTINGS.items()
        if settings[name] is not None and settings[name] is not False and settings[name] != {}
    ]
    if given:
        raise ReslabError(
            f"--resume {str(resume)!r} continues the run with the settings it started with; drop "
            f"{', '.join(given)} (to train with other settings, start a new run, e.g. with --weights)"
        )


def _resumed_device(resume: str | Path) -> str | None:
    """The device a resumed run trained on, from its config.json (None if unreadable: the checkpoint
    itself, read later, is the authority and reports any problem)."""
    path = Path(resume)
    config = (path if path.is_dir() else path.parent) / "config.json"
    try:
        return str(json.loads(config.read_text())["device"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resume_checkpoint(resume: str | Path) -> dict[str, Any]:
    path = Path(resume)
    if path.is_dir():
        if not (path / "last.pt").is_file():
            raise ReslabError(f"--resume {str(path)!r}: no last.pt in that folder; is it a reslab run?")
        path = path / "last.pt"
    elif path.name != "last.pt" and path.exists():
        raise ReslabError(
            f"--resume {str(path)!r}: give the run's last.pt or its folder; resuming from {path.name} "
            "would rewind the run to that checkpoint and overwrite last.pt"
        )
    payload = load_checkpoint(path)
    for key in ("train_config", "optimizer", "scheduler", "rng", "epoch"):
        if key not in payload:
            raise ReslabError(f"--resume {str(path)!r}: it holds weights only, not a training state")
    return payload


def train(
    model: str | None = None,
    data: str | None = None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    warmup_steps: int | None = None,
    weight_decay: float | None = None,
    precision: str | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str | None = None,
    recipe: str | None = None,
    quiet: bool = False,
    compile: bool = False,
    model_options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    download: bool = False,
    threads: int | None = None,
    sync_bn: bool = False,
    lr_scaling: str | None = None,
    label_smoothing: float | None = None,
    random_erase: float | None = None,
    console: Console | None = None,
) -> RunResult:
    """Train `model` (None: resnet20) on `data` (None: digits); write the run directory; evaluate the test
    set once with the best-on-validation weights. None for precision, seed, device, recipe means auto, 0,
    auto, default. With `resume` (a run's last.pt or its folder) every setting comes from the checkpoint
    and the run continues; passing any of RUN_SETTINGS with it is a ReslabError.
    threads: CPU threads for this run (None: 1 for images of at most 16x16 pixels, else torch's default).
    Under torchrun (RANK/WORLD_SIZE set) it trains with DistributedDataParallel: batch_size is the global
    batch, sync_bn makes BN statistics span it, lr_scaling ("none"/"linear") says how lr follows a changed
    global batch; only rank 0 writes the run directory and prints. label_smoothing (cross-entropy's) and
    random_erase (the probability of erasing a random rectangle of each training image) default to the
    recipe's, 0 for every recipe. A CPU run tunes this process's malloc (`reslab.tune_host_allocator`)."""
    if console is None:
        # Never wrap or truncate when the output goes to a file (the same rule as the CLI's console).
        console = Console(width=None if sys.stdout.isatty() else 200)
    saved_threads = torch.get_num_threads()
    try:
        with session(device if resume is None else _resumed_device(resume)) as dist_ctx:
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
    model: str | None,
    data: str | None,
    *,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    schedule: str | None,
    warmup_steps: int | None,
    weight_decay: float | None,
    precision: str | None,
    seed: int | None,
    out: str | Path | None,
    resume: str | Path | None,
    device: str | None,
    recipe: str | None,
    quiet: bool,
    compile: bool,
    model_options: dict[str, Any] | None,
    weights: str | Path | None,
    download: bool,
    threads: int | None,
    sync_bn: bool,
    lr_scaling: str | None,
    label_smoothing: float | None,
    random_erase: float | None,
    console: Console,
    dist_ctx: DistContext,
) -> RunResult:
    dist_ctx.begin_setup()
    quiet = quiet or not dist_ctx.is_main
    payload = None
    if resume is not None:
        _refuse_run_settings(resume, {k: v for k, v in locals().items() if k in RUN_SETTINGS})
        payload = dist_ctx.on_main(lambda: _resume_checkpoint(resume))
        run_config = payload["train_config"]
        run_dir = Path(payload["path"]).parent
        model, data, seed = run_config["model"], run_config["data"], run_config["seed"]
        threads = threads or run_config["environment"].get("threads")
        model_options = run_config["model_options"]
        compile, download = run_config["compile"], download or run_config["download"]
        train_config = TrainConfig.from_dict(run_config["train"])
        dev = dist_ctx.device(resolve_device(run_config["device"]))
        sync_bn = run_config.get("distributed", {}).get("sync_bn", False)
        prec = resolve_precision(run_config["precision"]["precision"], dev)
        bundle = load_data(data, seed=seed, download=download).to(dev)
    else:
        model, data, recipe = model or "resnet20", data or "digits", recipe or "default"
        seed = 0 if seed is None else seed
        # Unknown names and impossible numbers fail before any data is read.
        depth = resolve_config(model).depth
        overrides = Overrides(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            lr_scaling=lr_scaling,
            label_smoothing=label_smoothing,
            random_erase=random_erase,
        )
        check_overrides(recipe, **overrides)
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise ReslabError(f"--out {str(out)!r} is a file; give a folder for the run directory")
        dev = dist_ctx.device(resolve_device(device or "auto"))
        prec = resolve_precision(precision or "auto", dev)
        bundle = load_data(data, seed=seed, download=download).to(dev)
        train_config = resolve_recipe(recipe, model_depth=depth, train_size=len(bundle.train), **overrides)
        run_dir = Path(out) if out is not None else default_run_dir(model, data)
        if dist_ctx.is_main and (run_dir / "last.pt").exists():
            raise ReslabError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pick --out"
            )

    torch.set_num_threads(cpu_threads(threads, bundle.image_size, dev))
    if dev.type == "cpu":
        tune_host_allocator()  # no page faults on every step's activations (reslab.host_memory)
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
    dist_info = distributed_config(dist_ctx, train_config.batch_size, sync_bn)

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
                "host_allocator_tuned": host_allocator_tuned(),
                "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            },
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "distributed": dist_info,
        }
        if dist_ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", run_config)
    elif run_config.get("distributed", {}).get("world_size", 1) != dist_ctx.world_size:
        # Resumed on another number of processes.
        run_config = {**run_config, "distributed": {**run_config.get("distributed", {}), **dist_info}}
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

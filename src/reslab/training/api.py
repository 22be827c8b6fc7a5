"""The public training API: `train` (the CLI calls exactly this)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ..atomic import write_json
from ..checkpoint import load_checkpoint
from ..data import DataBundle
from ..data.stream import skipped_line
from ..errors import ReslabError
from ..plots import plot_curves
from ..run_config import RunConfig, TrainRequest
from ..settings_file import settings_from_file
from ..split_metrics import evaluate_split, evaluation_batch_size
from .distributed import DistContext, Reporter, session, wrap_ddp
from .engine import FitState, Trainer, stream_settings
from .progress import RunProgress
from .selection import selection_text
from .setup import PreparedRun, Resume, prepare_new, prepare_resumed, resume_request

__all__ = ["RunResult", "train"]


@dataclass
class RunResult:
    run_dir: Path
    test: dict[str, Any]
    best_val_error: float
    metrics: list[dict[str, Any]]
    config: RunConfig


def train(
    model: str | None = None,
    data: str | None = None,
    *,
    resume: str | Path | None = None,
    config: str | Path | None = None,
    quiet: bool = False,
    console: Console | None = None,
    report_error: Reporter | None = None,
    **settings: Any,
) -> RunResult:
    """Train `model` (None: resnet20) on `data` (None: digits); write the run directory; evaluate the test
    set once with the weights best.pt kept (best on validation, or the final ones when the validation split
    is too small to choose by: select_by). Returns a RunResult whose `config` is the RunConfig.

    settings: the fields of `reslab.run_config.TrainRequest` (recipe, seed, precision, device, threads,
    out, compile, model_options, weights, download, sync_bn, image_size, data_mode ("auto", "memory" or
    "stream": folders), workers, strict_data) and any recipe override by name (epochs, batch_size, lr,
    schedule, warmup_steps, weight_decay, label_smoothing, random_erase, crop ("pad", "random-resized",
    "scale"), lr_scaling, optimizer, freeze, backbone_lr_scale, decay_norm_and_bias, ema, precise_bn,
    select_by ("auto", "val", "last"), ...:
    `reslab.run_config.RECIPE_OVERRIDES`); None keeps the default or the recipe's value.
    config: a JSON or YAML file of these settings, or a run's config.json (which repeats that run); the
    keywords given here win over it. resume: a run's last.pt or its folder; every setting then comes
    from its checkpoint, and only threads, download, workers and strict_data may be given. threads: CPU threads (None: 1 for
    images of at most 16x16 pixels, else torch's default). Under torchrun (RANK/WORLD_SIZE set) it trains with DistributedDataParallel:
    batch_size is the global batch, sync_bn makes BN statistics span it, lr_scaling ("none"/"linear") says
    how lr follows a changed global batch; only rank 0 writes the run directory and prints; report_error
    prints an error every rank shares. A CPU run tunes this process's malloc (`reslab.tune_host_allocator`).
    """
    if console is None:
        # Never wrap or truncate when the output goes to a file (the same rule as the CLI's console).
        console = Console(width=None if sys.stdout.isatty() else 200)
    settings = {"model": model, "data": data, **settings}
    # Which process group to join depends on the device; everything else is checked inside the setup
    # gate, so that under DDP a bad setting stops every rank with one line.
    if resume is not None:
        device = Resume(Path(resume)).device()
    else:
        device = settings.get("device") or _device_in(config)
    saved_threads = torch.get_num_threads()
    try:
        with session(device, report_error) as ctx:
            try:
                ctx.begin_setup()
                if resume is not None:
                    prepared = prepare_resumed(resume_request(resume, {**settings, "config": config}), ctx)
                else:
                    prepared = prepare_new(TrainRequest.from_settings(_with_file(config, settings)), ctx)
                return _run(prepared, quiet or not ctx.is_main, console, ctx)
            except BaseException as exc:
                ctx.fail(exc)  # a rank failing during setup meets the healthy ones at the gate
                raise
    finally:
        torch.set_num_threads(saved_threads)


def _with_file(config: str | Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The file's settings, overridden by every setting given here (None: not given)."""
    if config is None:
        return settings
    given = {key: value for key, value in settings.items() if value is not None}
    return {**settings_from_file(config), **given}


def _device_in(config: str | Path | None) -> str | None:
    """The device a settings file asks for (None if none, or if the file is unreadable: it is read again
    inside the setup gate, which reports any problem)."""
    if config is None:
        return None
    try:
        return settings_from_file(config).get("device")
    except ReslabError:
        return None


def _run(prepared: PreparedRun, quiet: bool, console: Console, ctx: DistContext) -> RunResult:
    config = prepared.config
    if ctx.is_main and prepared.write_config:
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(config.run_dir) / "config.json", config.to_dict())
    # Setup is over on every rank (or every rank stops here); from now on the ranks work in step.
    ctx.agree()
    config = replace(config, run_dir=ctx.broadcast_object(config.run_dir))
    train_model = wrap_ddp(prepared.model, ctx, prepared.device)
    if config.model.compile:
        train_model = torch.compile(train_model)
    trainer = Trainer(
        prepared.model,
        prepared.bundle,
        config,
        prepared.precision,
        prepared.device,
        train_model=train_model,
        dist=ctx,
    )
    if prepared.resume_from is not None:
        trainer.restore(prepared.resume_from)
    if not quiet:
        console.print(_announcement(prepared, trainer, ctx), highlight=False)
    try:
        with RunProgress(console, trainer.epochs, quiet=quiet) as progress:
            state = trainer.fit(progress)
    finally:
        if trainer.state.metrics and ctx.is_main:
            title = f"{config.model.name} on {config.data.spec}"
            plot_curves(Path(config.run_dir) / "curves.png", trainer.state.metrics, title=title)
    test = _test_once(prepared, Path(config.run_dir), ctx)
    if ctx.is_main:
        tested = selection_text(config.train.select_by, test["best_epoch"], len(prepared.bundle.val))
        write_json(Path(config.run_dir) / "test.json", test)
        console.print(
            f"test (once, {tested}): "
            f"loss {test['loss']:.4f}  accuracy {100 * test['accuracy']:.2f}%  error {100 * test['error']:.2f}%  "
            f"n {test['n']}  -> {config.run_dir}",
            highlight=False,
        )
    return _result(config, test, state)


def _result(config: RunConfig, test: dict[str, Any], state: FitState) -> RunResult:
    return RunResult(Path(config.run_dir), test, state.best_val_error, list(state.metrics), config)


def _test_once(prepared: PreparedRun, run_dir: Path, ctx: DistContext) -> dict[str, Any]:
    """The test set, once, with the weights best.pt kept (training/selection.py). Rank 0 reads best.pt
    (other machines need not share its disk) and sends the weights to every rank; each rank evaluates its
    shard of the test set and the sums are reduced."""
    best = ctx.on_main(
        lambda: {k: v for k, v in load_checkpoint(run_dir / "best.pt").items() if k in ("model", "epoch")}
    )
    prepared.model.load_state_dict(best["model"])
    bundle = prepared.bundle
    result = evaluate_split(
        prepared.model,
        ctx.shard(bundle.test),
        bundle.mean,
        bundle.std,
        prepared.precision,
        bundle.num_classes,
        batch_size=evaluation_batch_size(bundle.image_size, prepared.config.train.batch_size),
        reduce=ctx.all_reduce_sum if ctx.distributed else None,
        transform=bundle.evaluation,
        device=prepared.device,
        stream=stream_settings(prepared.config),
    )
    result.pop("confusion")
    skipped = result.pop("skipped", [])
    if skipped and ctx.is_main:  # rank 0's shard only: the test set is not worth a gather
        print(skipped_line("test", len(skipped), skipped), file=sys.stderr, flush=True)
    return {**result, "best_epoch": best["epoch"], "selected_by": prepared.config.train.select_by}


def _announcement(prepared: PreparedRun, trainer: Trainer, ctx: DistContext) -> str:
    config, bundle, prec = prepared.config, prepared.bundle, prepared.precision
    train = config.train
    what = "training"
    if prepared.resume_from is not None:
        what = f"resuming after epoch {prepared.resume_from['epoch']}: training"
    return (
        f"{what} {config.model.name} on {config.data.spec} ({len(bundle.train)} train / {len(bundle.val)} val / "
        f"{len(bundle.test)} test, {bundle.num_classes} classes{_data_text(bundle, config)}) for {trainer.epochs} epochs "
        f"({trainer.total_steps} steps of {train.batch_size}{_split_text(ctx, config)}) on {prepared.device}, "
        f"{prec.name}{' + channels_last' if prec.channels_last else ''}; recipe {train.recipe}, "
        f"{train.schedule} lr {train.lr:g} -> {config.run_dir}"
    )


def _data_text(bundle: DataBundle, config: RunConfig) -> str:
    """How the images are read, where it is not the in-memory default at the data's own size."""
    words = []
    if config.data.image_size is not None or config.train.crop != "pad":
        words.append(f"{bundle.image_size[0]}x{bundle.image_size[1]}, {config.train.crop} crops")
    if bundle.streamed:
        words.append(f"streamed by {config.data.workers} worker(s)")
    return "".join(f", {word}" for word in words)


def _split_text(ctx: DistContext, config: RunConfig) -> str:
    if not ctx.distributed:
        return ""
    bn = "SyncBN" if config.distributed.sync_bn else "per-rank BN"
    return (
        f" = {ctx.world_size} processes x {config.distributed.per_rank_batch}, DDP over {ctx.backend}, {bn}"
    )

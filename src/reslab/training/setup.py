"""A run before its first step: the RunConfig (built from a request, or read from the checkpoint a run
resumes from), its data on the device, and its model."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, run_config_of
from ..data import DataBundle, load_data
from ..data.options import DataOptions
from ..data.stream import default_workers
from ..errors import ReslabError
from ..host_memory import host_allocator_tuned, tune_host_allocator
from ..models import ResNet, create_model
from ..models.zoo import resolve_config
from ..precision import Precision, resolve_device, resolve_precision
from ..run_config import (
    DataSettings,
    DeviceSettings,
    Environment,
    ModelSettings,
    PrecisionSettings,
    RunConfig,
    TrainRequest,
    check_setting,
)
from ..weights import load_weights
from .distributed import DistContext, convert_sync_batchnorm, distributed_settings
from .finetune import freeze
from .recipes import recipe_crop, resolve_recipe, steps_per_epoch
from .run_dir import default_run_dir
from .selection import resolve_selection

# What may come with a resume: these change only speed and where data comes from, not what is trained.
RESUME_SETTINGS = ("threads", "download", "workers", "strict_data")


@dataclass(frozen=True)
class Resume:
    """Continue the run whose last.pt (or folder) is `path`, with its own settings."""

    path: Path
    threads: int | None = None
    download: bool = False
    workers: int | None = None
    strict_data: bool = False

    def __post_init__(self) -> None:
        check_setting("threads", self.threads)

    def device(self) -> str | None:
        """The device the run trained on, from its config.json (None if unreadable: the checkpoint itself,
        read later, is the authority and reports any problem)."""
        folder = self.path if self.path.is_dir() else self.path.parent
        try:
            return RunConfig.from_dict(json.loads((folder / "config.json").read_text())).device.device
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass
class PreparedRun:
    config: RunConfig
    bundle: DataBundle
    model: ResNet  # the plain module, on the device
    precision: Precision
    device: torch.device
    resume_from: dict[str, Any] | None = None  # the last.pt payload of a resumed run
    write_config: bool = True  # config.json is (re)written: a new run, or one resumed on another world size


def resume_request(resume: str | Path, settings: dict[str, Any]) -> Resume:
    """A resume with only RESUME_SETTINGS; any other given setting is refused (it would go unused)."""
    given = [name for name, value in settings.items() if not _unset(value)]
    refused = [name for name in given if name not in RESUME_SETTINGS]
    if refused:
        raise ReslabError(
            f"resume {str(resume)!r} continues the run with the settings it started with; drop "
            f"{', '.join(refused)} (to train with other settings, start a new run, e.g. with weights)",
            params=("resume", *refused, "weights"),
        )
    return Resume(
        Path(resume),
        settings.get("threads"),
        bool(settings.get("download")),
        settings.get("workers"),
        bool(settings.get("strict_data")),
    )


def _unset(value: Any) -> bool:
    # Identity, not equality: seed=0 is a setting given, False is a switch left off.
    return value is None or value is False or (isinstance(value, dict) and not value)


def cpu_threads(requested: int | None, image_size: tuple[int, int], device: torch.device) -> int:
    """Threads for a CPU run. Tiny images make per-layer work so small that a second OpenMP thread
    buys little on an idle machine and costs 10-60x on a busy one (measured on digits, see README)."""
    if requested is not None:
        return requested
    if device.type == "cpu" and image_size[0] * image_size[1] <= 16 * 16:
        return 1
    return torch.get_num_threads()


def prepare_new(request: TrainRequest, ctx: DistContext) -> PreparedRun:
    depth = resolve_config(request.model).depth  # unknown names fail before any data is read
    device = ctx.device(resolve_device(request.device))
    precision = resolve_precision(request.precision, device)
    crop = recipe_crop(request.recipe, request.overrides)
    options = DataOptions(request.image_size, request.data_mode or "auto", crop)
    bundle = load_data(request.data, request.seed, request.download, options).to(device)
    train = resolve_recipe(
        request.recipe, model_depth=depth, train_size=len(bundle.train), **request.overrides
    )
    train = resolve_selection(train, len(bundle.val))
    run_dir = Path(request.out) if request.out is not None else default_run_dir(request.model, request.data)
    if ctx.is_main and (run_dir / "last.pt").exists():
        raise ReslabError(
            f"{str(run_dir)!r} already holds a run; continue it with resume {str(run_dir)!r}, or pick out",
            params=("resume", "out"),
        )
    _set_threads(cpu_threads(request.threads, bundle.image_size, device), device)
    model = _build_model(request.model, request.model_options, bundle, request.seed)
    if request.weights is not None:
        load_weights(model, request.weights, new_classifier=True)
        bundle = _normalised_as_pretrained(bundle, model)
    config = RunConfig(
        model=ModelSettings(
            request.model,
            dict(request.model_options),
            model.config.to_dict(),
            request.weights,
            request.compile,
            _pretrained_metadata(model),
        ),
        data=DataSettings(
            request.data,
            bundle.info(),
            request.download,
            request.image_size,
            bundle.info()["mode"],
            default_workers(ctx.world_size) if request.workers is None else request.workers,
            request.strict_data,
        ),
        train=train,
        precision=PrecisionSettings(precision.name, precision.channels_last),
        device=DeviceSettings(str(device), torch.get_num_threads()),
        distributed=distributed_settings(ctx, train.batch_size, request.sync_bn),
        seed=request.seed,
        run_dir=str(run_dir),
        steps_per_epoch=steps_per_epoch(len(bundle.train), train.batch_size),
        environment=_environment(device),
        started=time.strftime("%Y-%m-%dT%H:%M:%S"),
        request=request.as_settings(),
    )
    return _on_device(config, bundle, model, precision, device, ctx)


def prepare_resumed(resume: Resume, ctx: DistContext) -> PreparedRun:
    payload = ctx.on_main(lambda: _read_last_checkpoint(resume.path))
    stored = run_config_of(payload)
    assert stored is not None  # _read_last_checkpoint refuses checkpoints without one
    device = ctx.device(resolve_device(stored.device.device))
    precision = resolve_precision(stored.precision.precision, device)
    download = resume.download or stored.data.download
    options = DataOptions(stored.data.image_size, stored.data.mode, stored.train.crop)
    bundle = _stored_statistics(load_data(stored.data.spec, stored.seed, download, options), stored)
    bundle = bundle.to(device)
    _set_threads(cpu_threads(resume.threads or stored.device.threads, bundle.image_size, device), device)
    model = _build_model(stored.model.name, stored.model.options, bundle, stored.seed)
    data = replace(
        stored.data,
        workers=stored.data.workers if resume.workers is None else resume.workers,
        strict=resume.strict_data or stored.data.strict,
    )
    config = replace(
        stored,
        data=data,
        run_dir=str(Path(payload["path"]).parent),
        distributed=distributed_settings(ctx, stored.train.batch_size, stored.distributed.sync_bn),
    )
    prepared = _on_device(config, bundle, model, precision, device, ctx)
    prepared.resume_from = payload
    prepared.write_config = config.distributed.world_size != stored.distributed.world_size
    return prepared


def _read_last_checkpoint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        if not (path / "last.pt").is_file():
            raise ReslabError(
                f"resume {str(path)!r}: no last.pt in that folder; is it a reslab run?", params=("resume",)
            )
        path = path / "last.pt"
    elif path.name != "last.pt" and path.exists():
        raise ReslabError(
            f"resume {str(path)!r}: give the run's last.pt or its folder; resuming from {path.name} "
            "would rewind the run to that checkpoint and overwrite last.pt",
            params=("resume",),
        )
    payload = load_checkpoint(path)
    has_state = all(key in payload for key in ("optimizer", "scheduler", "rng", "epoch"))
    if not has_state or run_config_of(payload) is None:
        raise ReslabError(
            f"resume {str(path)!r}: it holds weights only, not a training state", params=("resume",)
        )
    return payload


def _normalised_as_pretrained(bundle: DataBundle, model: ResNet) -> DataBundle:
    """Starting from named torchvision weights, inputs are normalised with the weights' mean and std (the
    statistics their first filters were trained on), not the data's; a checkpoint of reslab's carries
    on with the data's own."""
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        return bundle
    return replace(bundle, mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]))


def _stored_statistics(bundle: DataBundle, stored: RunConfig) -> DataBundle:
    """A resumed run normalises as it began (its data's statistics, or its pretrained weights')."""
    info = stored.data.info
    if not info.get("mean") or not info.get("std"):
        return bundle
    return replace(bundle, mean=tuple(info["mean"]), std=tuple(info["std"]))


def _pretrained_metadata(model: ResNet) -> dict[str, Any] | None:
    """Named weights' metadata (reslab.pretrained: mean, std, sizes, the weights' name), JSON-shaped, for
    the run config; their 1,000 class names stay out (the run has its own classes)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        return None
    return json.loads(json.dumps({k: v for k, v in cfg.items() if k != "class_names"}, default=str))


def _set_threads(threads: int, device: torch.device) -> None:
    torch.set_num_threads(threads)
    if device.type == "cpu":
        tune_host_allocator()  # no page faults on every step's activations (reslab.host_memory)


def _build_model(name: str, options: dict[str, Any], bundle: DataBundle, seed: int) -> ResNet:
    torch.manual_seed(seed)
    return create_model(name, in_chans=bundle.in_chans, num_classes=bundle.num_classes, **options)


def _on_device(
    config: RunConfig,
    bundle: DataBundle,
    model: ResNet,
    precision: Precision,
    device: torch.device,
    ctx: DistContext,
) -> PreparedRun:
    model = model.to(device)
    freeze(model, config.train.freeze)  # before DDP, which registers the parameters that take gradients
    if config.distributed.sync_bn and ctx.distributed:
        model = convert_sync_batchnorm(model, device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return PreparedRun(config, bundle, model, precision, device)


def _environment(device: torch.device) -> Environment:
    from .. import __version__

    return Environment(
        reslab=__version__,
        torch=str(torch.__version__),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        host_allocator_tuned=host_allocator_tuned(),
        cuda_device=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    )

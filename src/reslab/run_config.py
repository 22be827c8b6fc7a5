"""The typed run configuration: what a training run was asked for and what it resolved to.

`TrainRequest` is a call (the CLI's flags or `reslab.train`'s keywords), validated field by field as it is
made. `RunConfig` is the whole run after resolution (recipe, device, precision, data, model): built once for
a new run, or read back from a checkpoint on resume; config.json and every checkpoint store its `to_dict()`.

Adding a training setting: a field of `TrainConfig` (with its rule in `_RULES`) and, to expose it on the
command line, a flag in `cli/train_cmd.py` whose dest is the field's name. `reslab.train(name=value)` and
the recipe overrides pick it up by name. Errors name parameters as Python spells them (`batch_size`); the
CLI shows its flags.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from .data.crops import CROPS
from .data.options import DATA_MODES
from .errors import ReslabError
from .models.config import ResNetConfig

FORMAT_VERSION = 2  # 1: reslab 0.1's untyped dict (read by `RunConfig.from_legacy`)
RECIPES = ("default", "paper", "imagenet")
SCHEDULES = ("step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCALING_RULES = ("none", "linear")
OPTIMIZERS = ("sgd", "adamw")
FREEZE_POINTS = ("none", "stem", "layer1", "layer2", "layer3", "backbone")
SELECTIONS = ("auto", "val", "last")  # training/selection.py


def _finite_positive(value: float) -> bool:
    return value > 0 and math.isfinite(value)


# One rule per setting a user gives by value (every recipe override, and threads): (test, must be).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v >= 1, "must be at least 1"),
    "batch_size": (lambda v: v >= 1, "must be at least 1"),
    "lr": (_finite_positive, "must be a positive number"),
    "weight_decay": (lambda v: v >= 0 and math.isfinite(v), "must be zero or positive"),
    "warmup_steps": (lambda v: v >= 0, "must be zero or positive"),
    "momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "gamma": (_finite_positive, "must be a positive number"),
    "nesterov": (lambda v: isinstance(v, bool), "must be True or False"),
    "warmup_mode": (lambda v: v in ("linear", "constant"), "must be one of linear, constant"),
    "warmup_factor": (_finite_positive, "must be a positive number"),
    "label_smoothing": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "random_erase": (lambda v: 0 <= v <= 1, "must be a probability in [0, 1]"),
    "threads": (lambda v: v >= 1, "must be at least 1"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
    "freeze": (lambda v: v in FREEZE_POINTS, f"must be one of {', '.join(FREEZE_POINTS)}"),
    "backbone_lr_scale": (lambda v: v >= 0 and math.isfinite(v), "must be zero or positive"),
    "decay_norm_and_bias": (lambda v: isinstance(v, bool), "must be True or False"),
    "ema": (lambda v: 0 <= v < 1, "must be in [0, 1) (0: off)"),
    "precise_bn": (
        lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "must be auto or a number of batches (0: off)",
    ),
    "select_by": (lambda v: v in SELECTIONS, f"must be one of {', '.join(SELECTIONS)}"),
    "crop": (lambda v: v in CROPS, f"must be one of {', '.join(CROPS)}"),
    "schedule": (lambda v: v in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
    "lr_scaling": (lambda v: v in LR_SCALING_RULES, f"must be one of {', '.join(LR_SCALING_RULES)}"),
}


def check_type(name: str, value: Any, hint: Any) -> None:
    """A setting's value has its field's type (a file or a Python caller can give anything): a bool is
    no number, an int is a float, None passes where the field allows it."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is bool and isinstance(value, bool):
            return
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and (base is float or (base is int and isinstance(value, int))):
            return
        if base in (str, dict, tuple) and isinstance(value, base):
            return
    names = " or ".join(getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in allowed)
    raise ReslabError(f"{name} must be {names}, got {value!r}", params=(name,))


def check_setting(name: str, value: Any) -> None:
    """The one check of a training setting's value (None means "the recipe's" and always passes)."""
    rule = _RULES.get(name)
    if value is None:
        return
    if name in _override_types():
        check_type(name, value, _override_types()[name])
    if rule is None:
        return
    test, must = rule
    try:
        ok = bool(test(value))
    except TypeError:
        ok = False
    if not ok:
        raise ReslabError(f"{name} {must}, got {value!r}", params=(name,))


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting of a run after the recipe's defaults and the user's overrides are merged.
    Built by training/recipes.py from a validated request, or read back from a run that was."""

    recipe: str
    epochs: int
    batch_size: int
    lr: float
    schedule: str
    warmup_steps: int  # -1 in a recipe: a quarter of the run (resolved before the run starts)
    weight_decay: float
    momentum: float = 0.9
    nesterov: bool = False
    # step schedule: lr is multiplied by `gamma` at each milestone. Milestones are iterations when
    # `milestones_are_steps`, else fractions of the run (0.5 = halfway).
    milestones: tuple[float, ...] = (0.5, 0.75)
    milestones_are_steps: bool = False
    gamma: float = 0.1
    # "linear": ramp from 0 to lr over warmup_steps. "constant": lr * warmup_factor for warmup_steps.
    warmup_mode: str = "linear"
    warmup_factor: float = 0.1
    # Stop after this many iterations (the paper counts iterations, not epochs); 0 = epochs * steps/epoch.
    max_steps: int = 0
    label_smoothing: float = 0.0
    # Random erasing probability per training image (0 = off); see data/batches.py random_erase.
    random_erase: float = 0.0
    optimizer: str = "sgd"  # sgd (momentum, nesterov) or adamw
    freeze: str = "none"  # FREEZE_POINTS: frozen parts get no gradient, no optimiser state, BN in eval mode
    backbone_lr_scale: float = 1.0  # lr of everything but the classifier, as a fraction of lr
    # The papers decay every weight (runs saved before this setting existed did too); the default and
    # imagenet recipes leave norm-layer parameters and biases undecayed.
    decay_norm_and_bias: bool = True
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off)
    # Recompute BN statistics over this many training batches before each validation (0 = off; runs
    # saved before the setting had none). "auto" in a recipe, resolved by resolve_recipe.
    precise_bn: int | str = 0
    # The training crop (data/crops.py): pad-and-crop, random-resized (the imagenet recipe) or the
    # paper's scale augmentation. It also decides how validation and test images are read.
    crop: str = "pad"
    # The weights best.pt keeps and the test uses: best on validation ("val"), the final ones ("last"),
    # or "auto" in a recipe (training/selection.py; runs saved before the setting chose by validation).
    select_by: str = "val"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Runs saved before a setting existed get its default; a setting this reslab does not know (a
        newer run's) is refused rather than silently dropped."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ReslabError(
                f"the run was trained with setting(s) this reslab does not know: {', '.join(sorted(unknown))}"
            )
        data = dict(data)
        data["milestones"] = tuple(data.get("milestones", ()))
        return cls(**data)


# Settings a call may give to replace the recipe's value: TrainConfig's fields that describe the
# training, plus the rule for lr under another batch size.
RECIPE_OVERRIDES = tuple(
    f.name
    for f in fields(TrainConfig)
    # Not the recipe's name or bookkeeping; milestones mean steps or fractions by recipe, so not either.
    if f.name not in ("recipe", "extra", "max_steps", "milestones", "milestones_are_steps")
) + ("lr_scaling",)


@functools.cache
def _override_types() -> dict[str, Any]:
    return {**typing.get_type_hints(TrainConfig), "lr_scaling": str, "threads": int}


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of dataclass `cls` (newer files may carry more)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


# What model_options may set: ResNetConfig's options that the data does not decide.
_MODEL_OPTIONS = set(ResNetConfig.__dataclass_fields__) - {"name", "num_classes", "in_chans"}


@dataclass(frozen=True)
class TrainRequest:
    """One call of `reslab train` / `reslab.train`, validated as it is made. `overrides` replace the
    recipe's values (keys: RECIPE_OVERRIDES)."""

    model: str = "resnet20"
    data: str = "digits"
    recipe: str = "default"
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    threads: int | None = None
    out: str | None = None
    compile: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    download: bool = False
    sync_bn: bool = False
    # Data preparation (reslab.data.options / stream): the square side the model sees, memory or
    # stream for folders, DataLoader workers and whether an undecodable streamed image stops the run.
    image_size: int | None = None
    data_mode: str | None = None  # None: auto
    workers: int | None = None
    strict_data: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(TrainRequest)
        for item in fields(self):
            if item.name != "overrides":
                check_type(item.name, getattr(self, item.name), hints[item.name])
        unknown_options = set(self.model_options) - _MODEL_OPTIONS
        if unknown_options:
            raise ReslabError(
                f"unknown model option(s) {', '.join(sorted(unknown_options))} in model_options; "
                f"choose from {', '.join(sorted(_MODEL_OPTIONS))}",
                params=("model_options",),
            )
        if self.recipe not in RECIPES:
            raise ReslabError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.precision not in PRECISIONS:
            raise ReslabError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        check_setting("threads", self.threads)
        if self.image_size is not None and self.image_size < 1:
            raise ReslabError(f"image_size must be at least 1, got {self.image_size}", params=("image_size",))
        if self.data_mode is not None and self.data_mode not in DATA_MODES:
            raise ReslabError(
                f"unknown data_mode {self.data_mode!r}; choose one of {', '.join(DATA_MODES)}",
                params=("data_mode",),
            )
        if self.workers is not None and self.workers < 0:
            raise ReslabError(f"workers must be zero or more, got {self.workers}", params=("workers",))
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise ReslabError(
                f"out {self.out!r} is a file; give a folder for the run directory", params=("out",)
            )
        unknown = set(self.overrides) - set(RECIPE_OVERRIDES)
        if unknown:
            raise TypeError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        for name, value in self.overrides.items():
            check_setting(name, value)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TrainRequest:
        """A request from keyword settings: TrainRequest's fields, or recipe overrides by name. None means
        "not given": the recipe's value, or the field's default."""
        own = {f.name for f in fields(cls)} - {"overrides"}
        unknown = set(settings) - own - set(RECIPE_OVERRIDES)
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(sorted(own | set(RECIPE_OVERRIDES)))}"
            )
        given = {key: value for key, value in settings.items() if value is not None}
        return cls(
            **{key: _plain(value) for key, value in given.items() if key in own},
            overrides={key: value for key, value in given.items() if key in RECIPE_OVERRIDES},
        )

    def as_settings(self) -> dict[str, Any]:
        """The request as keyword settings again (what `from_settings` takes)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "overrides"}
        return {**own, **self.overrides}


def setting_names() -> set[str]:
    """Every name a call may set: TrainRequest's fields and the recipe overrides."""
    return ({f.name for f in fields(TrainRequest)} - {"overrides"}) | set(RECIPE_OVERRIDES)


def _plain(value: Any) -> Any:
    """Paths and torchvision weights enums as the strings config.json records."""
    return str(value) if isinstance(value, Path | Enum) else value


@dataclass(frozen=True)
class ModelSettings:
    name: str
    options: dict[str, Any]  # create_model overrides (shortcut, order, widths, ...)
    config: dict[str, Any]  # the built ResNetConfig.to_dict()
    weights: str | None = None  # the weights training started from
    compile: bool = False
    # Named weights' metadata (weights, url, mean, std, input/resize/crop sizes), None for files.
    pretrained: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # JSON-shaped, as config.json reads back (reslab 0.1's checkpoints hold tuples).
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.items()}
        object.__setattr__(self, "config", plain)


@dataclass(frozen=True)
class DataSettings:
    spec: str
    info: dict[str, Any]  # DataBundle.info(): classes, channels, size, mean/std, split sizes
    download: bool = False
    image_size: int | None = None  # as asked (None: the data's own)
    mode: str = "memory"  # resolved: memory or stream
    workers: int = 0  # DataLoader workers of a streamed set
    strict: bool = False  # an undecodable streamed image stops the run


@dataclass(frozen=True)
class PrecisionSettings:
    precision: str  # resolved: fp32, bf16 or fp16
    channels_last: bool


@dataclass(frozen=True)
class DeviceSettings:
    device: str  # resolved: cpu, cuda, cuda:N
    threads: int


@dataclass(frozen=True)
class DistributedSettings:
    world_size: int = 1
    backend: str | None = None
    sync_bn: bool = False
    global_batch: int | None = None
    per_rank_batch: int | None = None
    batch_size_means: str = "global batch (all processes together)"


@dataclass(frozen=True)
class Environment:
    reslab: str = ""
    torch: str = ""
    python: str = ""
    cpu_count: int | None = None
    host_allocator_tuned: bool = False
    cuda_device: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """A training run, resolved: what config.json holds and what resume starts from."""

    model: ModelSettings
    data: DataSettings
    train: TrainConfig
    precision: PrecisionSettings
    device: DeviceSettings
    distributed: DistributedSettings
    seed: int
    run_dir: str
    steps_per_epoch: int
    environment: Environment = field(default_factory=Environment)
    started: str = ""
    # What the call asked for (TrainRequest.as_settings()): `reslab train --config config.json` repeats it.
    request: dict[str, Any] | None = None
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"] = self.train.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Read a stored run config, of this format or reslab 0.1's."""
        if "version" not in data:
            return cls.from_legacy(data)
        if data["version"] > FORMAT_VERSION:
            raise ReslabError(f"run config format {data['version']} is newer than this reslab reads")
        parts: dict[str, type] = {
            "model": ModelSettings,
            "data": DataSettings,
            "precision": PrecisionSettings,
            "device": DeviceSettings,
            "distributed": DistributedSettings,
            "environment": Environment,
        }
        values = _known(cls, data)
        for key, part in parts.items():
            values[key] = part(**_known(part, data[key]))
        values["train"] = TrainConfig.from_dict(data["train"])
        return cls(**values)

    @classmethod
    def from_legacy(cls, data: Mapping[str, Any]) -> RunConfig:
        """reslab 0.1's config.json / checkpoint `train_config`: one flat dict."""
        env = dict(data.get("environment", {}))
        return cls(
            model=ModelSettings(
                name=data["model"],
                options=dict(data.get("model_options") or {}),
                config=dict(data.get("model_config") or {}),
                weights=data.get("weights"),
                compile=bool(data.get("compile", False)),
            ),
            data=DataSettings(data["data"], dict(data.get("data_info") or {}), bool(data.get("download"))),
            train=TrainConfig.from_dict(data["train"]),
            precision=PrecisionSettings(**_known(PrecisionSettings, data["precision"])),
            device=DeviceSettings(str(data["device"]), int(env.get("threads") or 1)),
            distributed=DistributedSettings(**_known(DistributedSettings, data.get("distributed", {}))),
            seed=int(data.get("seed", 0)),
            run_dir=str(data.get("run_dir", "")),
            steps_per_epoch=int(data.get("steps_per_epoch", 0)),
            environment=Environment(**_known(Environment, env)),
            started=str(data.get("started", "")),
        )

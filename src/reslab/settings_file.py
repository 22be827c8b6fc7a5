"""Training settings from a file: `reslab train --config FILE` / `reslab.train(config=FILE)`.

The file is JSON or YAML: a mapping of setting names (as `reslab.train` spells them; `batch-size` also
works) to values, or a run's own config.json, whose recorded request repeats that run (into a new run
directory unless `out` is given). Settings given on the command line or as keywords win over the file's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ReslabError
from .run_config import RECIPE_OVERRIDES, setting_names

# Resolved values of a reslab 0.1 config.json (no recorded request) that repeat it.
_LEGACY_TRAIN_KEYS = (
    "batch_size",
    "lr",
    "schedule",
    "warmup_steps",
    "weight_decay",
    "label_smoothing",
    "random_erase",
)


def settings_from_file(path: str | Path) -> dict[str, Any]:
    """The settings a file holds, checked by name (values are checked when the request is made)."""
    path = Path(path)
    data = _read_mapping(path)
    if "request" in data and "version" in data:
        settings = {key: value for key, value in dict(data["request"] or {}).items() if key != "out"}
    elif "model_config" in data and "train" in data:
        settings = _legacy_run_settings(data)
    else:
        settings = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - setting_names())
    if unknown:
        raise ReslabError(
            f"config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(setting_names()))}",
            params=("config",),
        )
    return settings


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReslabError(f"config {str(path)!r} cannot be read ({exc})", params=("config",)) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: the file is not what it claims
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReslabError(
            f"config {str(path)!r} is not valid {path.suffix[1:] or 'JSON'}: {first}", params=("config",)
        ) from None
    if not isinstance(data, dict):
        raise ReslabError(f"config {str(path)!r} holds no mapping of settings", params=("config",))
    return data


def _legacy_run_settings(data: dict[str, Any]) -> dict[str, Any]:
    """reslab 0.1 recorded only resolved values; these repeat its runs (a paper-recipe run keeps its
    iteration budget because its epochs are left to the recipe)."""
    train = data["train"]
    settings: dict[str, Any] = {
        "model": data["model"],
        "data": data["data"],
        "recipe": train.get("recipe", "default"),
        "seed": data.get("seed", 0),
        "precision": (data.get("precision") or {}).get("precision", "auto"),
        "model_options": data.get("model_options") or {},
        "compile": bool(data.get("compile", False)),
        "weights": data.get("weights"),
        "download": bool(data.get("download", False)),
    }
    settings.update(
        {key: train[key] for key in _LEGACY_TRAIN_KEYS if key in train and key in RECIPE_OVERRIDES}
    )
    if not train.get("max_steps"):
        settings["epochs"] = train["epochs"]
    return settings

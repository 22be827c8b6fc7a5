"""Training settings from a file: `reslab train --config FILE` / `reslab.train(config=FILE)`.

The file is JSON or YAML: a mapping of setting names (as `reslab.train` spells them; `batch-size` also
works) to values, or a run's own config.json (this reslab's or 0.1's), which repeats that run: its
request with every training number as it resolved (into a new run directory unless `out` is given). Settings given on the command line or as keywords win over the file's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ReslabError
from .run_config import RECIPE_OVERRIDES, RunConfig, setting_names


def settings_from_file(path: str | Path) -> dict[str, Any]:
    """The settings a file holds, checked by name (values are checked when the request is made)."""
    path = Path(path)
    data = _read_mapping(path)
    if "version" in data or ("model_config" in data and "train" in data):
        settings = _run_settings(path, data)
    else:
        settings = {str(key).replace("-", "_"): _number(value) for key, value in data.items()}
    unknown = sorted(set(settings) - setting_names())
    if unknown:
        raise ReslabError(
            f"config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(setting_names()))}",
            params=("config",),
        )
    return settings


def _number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as a string; a string that is a number is one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


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


def _run_settings(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A run's config.json (either format) as the settings that repeat it: what it asked for, with every
    training number as it resolved, so that later changes of a recipe's defaults do not change it. Its
    `out` is not repeated (that folder holds the run)."""
    try:
        config = RunConfig.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReslabError(
            f"config {str(path)!r} is not a readable run config ({exc})", params=("config",)
        ) from None
    settings: dict[str, Any] = {
        "model": config.model.name,
        "data": config.data.spec,
        "recipe": config.train.recipe,
        "seed": config.seed,
        "precision": config.precision.precision,
        "model_options": config.model.options,
        "weights": config.model.weights,
        "compile": config.model.compile,
        "download": config.data.download,
        "sync_bn": config.distributed.sync_bn,
        **(config.request or {}),
    }
    train = config.train.to_dict()
    for key in RECIPE_OVERRIDES:
        # An iteration budget (the paper recipe's) stays the recipe's, unless epochs replaced it.
        if key in train and not (key == "epochs" and config.train.max_steps):
            settings[key] = train[key]
    settings.pop("out", None)
    return settings

"""How a stage's configuration is assembled for a dataset: defaults, the dataset's settings file, its overrides.

Used by the Snakefile (rules/common.smk) and by tools that read config.yaml themselves (stages.weights).
"""
from __future__ import annotations

from pathlib import Path

import yaml


def deep_merge(base: dict, override: dict | None) -> dict:
    """``base`` with ``override``'s keys replacing its own, recursively for nested mappings."""
    merged = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_settings(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def stage_section(config: dict, stage: str, dataset: str, settings: dict | None = None) -> dict:
    """config[stage], then the dataset's settings file (e.g. config/paper.yaml), then the dataset entry's own keys.

    ``settings`` is the parsed settings file when the caller caches it; otherwise it is read here.
    """
    entry = config["datasets"][dataset]
    if settings is None and "settings" in entry:
        settings = read_settings(entry["settings"])
    return deep_merge(deep_merge(config[stage], (settings or {}).get(stage)), entry.get(stage))


def config_object(text: str, option: str = "--config-json") -> dict:
    """A stage's config section as passed on its command line: one JSON object."""
    import json

    from stages.common.errors import StageError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise StageError(f"{option} is not valid JSON ({err}).") from err
    if not isinstance(value, dict):
        raise StageError(f"{option} must be a JSON object.")
    return value

"""Dataset descriptions (``config/datasets/*.yaml``) as explicit dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stages.common.errors import StageError

LIST_KINDS = ("lists", "folder")


@dataclass(frozen=True)
class FoldLists:
    train: str
    test: str


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset lives and how to read its annotation lists.

    ``kind: lists`` reads DFER-CLIP's 3-column lists (``<path> <num_frames> <label>``) per fold;
    ``kind: folder`` scans ``root`` for videos / frame folders grouped in class-named subfolders.
    ``path_prefix`` rewrites the authors' absolute prefixes (``from``) to the local root (``to``).
    """

    name: str
    root: str
    classes: tuple[str, ...]
    kind: str = "lists"
    folds: dict[str, FoldLists] = field(default_factory=dict)
    path_prefix_from: str = ""
    path_prefix_to: str = ""
    clip_id_prefix: str = ""
    id_root: str = ""  # clip ids are paths relative to root/id_root, e.g. DFEW_Frame_Face/00001 -> dfew-00001
    shards: int = 1
    max_drop_fraction: float = 0.02

    @property
    def id_prefix(self) -> str:
        return self.clip_id_prefix or self.name

    @property
    def local_prefix(self) -> str:
        """What the authors' path prefix is rewritten to: the local root unless given."""
        return self.path_prefix_to or self.root


def dataset_config_from_dict(raw: dict, source: str = "<config>") -> DatasetConfig:
    """Build a :class:`DatasetConfig` from parsed YAML, with messages that name ``source``."""
    def need(key):
        if key not in raw:
            raise StageError(f"{source}: missing key '{key}'. See config/datasets/dfew.yaml for a complete example.")
        return raw[key]

    kind = raw.get("kind", "lists")
    if kind not in LIST_KINDS:
        raise StageError(f"{source}: kind must be one of {LIST_KINDS}, got {kind!r}.")
    folds = {}
    for fold, lists in (raw.get("folds") or {}).items():
        if not isinstance(lists, dict) or set(lists) != {"train", "test"}:
            raise StageError(f"{source}: fold '{fold}' must give exactly 'train' and 'test' list files.")
        folds[str(fold)] = FoldLists(train=str(lists["train"]), test=str(lists["test"]))
    if kind == "lists" and not folds:
        raise StageError(f"{source}: kind 'lists' needs at least one fold under 'folds'.")
    prefix = raw.get("path_prefix") or {}
    return DatasetConfig(
        name=str(need("name")),
        root=str(need("root")),
        classes=tuple(str(c) for c in need("classes")),
        kind=kind,
        folds=folds,
        path_prefix_from=str(prefix.get("from", "")),
        path_prefix_to=str(prefix.get("to", "")),
        clip_id_prefix=str(raw.get("clip_id_prefix", "")),
        id_root=str(raw.get("id_root", "")),
        shards=int(raw.get("shards", 1)),
        max_drop_fraction=float(raw.get("max_drop_fraction", 0.02)),
    )


def load_dataset_config(path: str | Path, overrides: dict | None = None) -> DatasetConfig:
    """Read a dataset YAML; top-level keys in ``overrides`` (e.g. a local ``root``) replace the file's."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StageError(f"{path}: dataset description not found. Copy config/datasets/dfew.yaml and edit it.") from err
    except yaml.YAMLError as err:
        raise StageError(f"{path}: not valid YAML ({err}).") from err
    if not isinstance(raw, dict):
        raise StageError(f"{path}: expected a mapping of keys (name, root, classes, folds, ...).")
    raw.update(overrides or {})
    return dataset_config_from_dict(raw, source=str(path))


def resolve_list_path(ds: DatasetConfig, list_file: str) -> Path:
    """List files are given relative to the dataset root unless absolute."""
    path = Path(list_file)
    return path if path.is_absolute() else Path(ds.root) / path

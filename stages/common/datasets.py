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
    ``same_as`` names the class of other datasets that a class of this one corresponds to, where the names differ
    (zero-shot transfers record the correspondence, :func:`class_mapping`).
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
    same_as: dict[str, str] = field(default_factory=dict)

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
    classes = tuple(str(c) for c in need("classes"))
    return DatasetConfig(
        name=str(need("name")),
        root=str(need("root")),
        classes=classes,
        kind=kind,
        folds=folds,
        path_prefix_from=str(prefix.get("from", "")),
        path_prefix_to=str(prefix.get("to", "")),
        clip_id_prefix=str(raw.get("clip_id_prefix", "")),
        id_root=str(raw.get("id_root", "")),
        shards=int(raw.get("shards", 1)),
        max_drop_fraction=float(raw.get("max_drop_fraction", 0.02)),
        same_as=parse_same_as(raw.get("same_as") or {}, classes, source),
    )


def parse_same_as(raw, classes: tuple[str, ...], source: str) -> dict[str, str]:
    """``{class of this dataset: class of other datasets}``; every key must be one of ``classes``."""
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise StageError(f"{source}: same_as must map class names to class names, e.g. {{joy: happiness}}.")
    unknown = sorted(set(raw) - set(classes))
    if unknown:
        raise StageError(f"{source}: same_as names {unknown}, which are not classes of this dataset {list(classes)}.")
    return dict(raw)


def class_mapping(target: DatasetConfig, source_classes: tuple[str, ...], source: str) -> dict[str, str | None]:
    """Each target class's counterpart among ``source_classes``: its ``same_as`` entry, else the class of the same
    name, else None (the source has no such class). ``source`` (the target's description file) names errors."""
    missing = sorted(v for v in target.same_as.values() if v not in source_classes)
    if missing:
        raise StageError(f"{source}: same_as maps to {missing}, which are not classes of the source dataset "
                         f"{list(source_classes)}.")
    named = {c: target.same_as.get(c, c) for c in target.classes}
    return {c: name if name in source_classes else None for c, name in named.items()}


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

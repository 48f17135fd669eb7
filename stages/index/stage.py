"""Build the clip index of a dataset from its lists (or a folder of videos), recounting frames from disk."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from stages.common.datasets import DatasetConfig, resolve_list_path
from stages.common.errors import StageError
from stages.common.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, count_frames
from stages.common.schemas import DROPPED_COLUMNS, INDEX_SCHEMA
from stages.index.annotations import ListEntry, Problem, read_list, rewrite_prefix

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.]+")


@dataclass
class IndexResult:
    table: pa.Table
    problems: list[Problem]
    referenced: int  # distinct clips the lists or folder named
    recounted: int  # clips whose listed frame count differed from disk


def clip_id_for(ds: DatasetConfig, source: str) -> str:
    """A stable text id from the source's path below ``root/id_root``: 'dfew-00001', never a bare number."""
    base = Path(ds.root) / ds.id_root
    try:
        rel = Path(source).relative_to(base)
    except ValueError:
        rel = Path(source)
    stem = rel.with_suffix("") if rel.suffix.lower() in VIDEO_EXTENSIONS else rel
    return f"{ds.id_prefix}-" + _UNSAFE_ID_CHARS.sub("-", stem.as_posix()).strip("-")


@dataclass
class _Clip:
    entry: ListEntry
    source: str
    splits: list[tuple[str, str]]


def _entries_from_lists(ds: DatasetConfig, problems: list[Problem]) -> dict[str, _Clip]:
    clips: dict[str, _Clip] = {}
    for fold, lists in ds.folds.items():
        for split, list_file in (("train", lists.train), ("test", lists.test)):
            entries, bad = read_list(resolve_list_path(ds, list_file))
            problems.extend(bad)
            seen_here: set[str] = set()
            for entry in entries:
                source = rewrite_prefix(entry.path, ds.path_prefix_from, ds.local_prefix)
                clip_id = clip_id_for(ds, source)
                if clip_id in seen_here:
                    problems.append(Problem(entry.file, entry.line, entry.path, f"duplicate id {clip_id} in the same list"))
                    continue
                seen_here.add(clip_id)
                known = clips.get(clip_id)
                if known is None:
                    clips[clip_id] = _Clip(entry, source, [(fold, split)])
                elif known.entry.label != entry.label:
                    problems.append(Problem(entry.file, entry.line, entry.path,
                                            f"label {entry.label} disagrees with label {known.entry.label} at {known.entry.file}:{known.entry.line}"))
                else:
                    known.splits.append((fold, split))
    return clips


def _entries_from_folder(ds: DatasetConfig, problems: list[Problem]) -> dict[str, _Clip]:
    """Videos or frame folders below class-named subfolders (``root/happiness/clip.mp4``), all in split 'test'."""
    root = Path(ds.root)
    if not root.is_dir():
        raise StageError(f"{root}: dataset folder not found. Set 'root' in the dataset config or put the videos there.")
    class_of = {name.lower(): i for i, name in enumerate(ds.classes)}
    clips: dict[str, _Clip] = {}
    for path in sorted(root.rglob("*")):
        is_video = path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS
        is_frame_dir = path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())
        if not (is_video or is_frame_dir):
            continue
        top = path.relative_to(root).parts[0].lower()
        label = class_of.get(top, -1)
        entry = ListEntry(str(root), 0, str(path), -1, label)
        clips[clip_id_for(ds, str(path))] = _Clip(entry, str(path), [("all", "test")])
    return clips


def check_layout(ds: DatasetConfig) -> None:
    """The clips' folder must exist where the dataset description says; otherwise every clip would be 'missing'."""
    clips_folder = Path(ds.root) / ds.id_root
    if ds.kind == "lists" and not clips_folder.is_dir():
        raise StageError(f"dataset '{ds.name}': expected the clips under {clips_folder}/ (root '{ds.root}' + id_root "
                         f"'{ds.id_root}'), but that folder does not exist. Put the dataset there, or fix root / id_root "
                         f"in its config (config/datasets/{ds.name}.yaml documents the layout).")


def build_index(ds: DatasetConfig, progress: bool = True) -> IndexResult:
    """Read the dataset's lists, recount every clip's frames on disk and keep the usable clips."""
    check_layout(ds)
    problems: list[Problem] = []
    clips = _entries_from_lists(ds, problems) if ds.kind == "lists" else _entries_from_folder(ds, problems)
    rows, recounted = [], 0
    for clip_id, clip in tqdm(sorted(clips.items()), desc=f"index {ds.name}", unit="clip", disable=not progress):
        entry = clip.entry
        if not 0 <= entry.label < len(ds.classes):
            problems.append(Problem(entry.file, entry.line, entry.path,
                                    f"label {entry.label} out of range 0..{len(ds.classes) - 1} for {len(ds.classes)} classes"))
            continue
        try:
            kind, n_frames = count_frames(clip.source)
        except StageError as err:
            problems.append(Problem(entry.file, entry.line, entry.path, str(err)))
            continue
        if n_frames == 0:
            problems.append(Problem(entry.file, entry.line, entry.path, f"{clip.source}: no frames"))
            continue
        recounted += entry.listed_frames not in (-1, n_frames)
        rows.append({
            "clip_id": clip_id, "source": clip.source, "source_kind": kind, "n_frames": n_frames,
            "label": entry.label, "class_name": ds.classes[entry.label],
            "splits": [{"fold": f, "split": s} for f, s in clip.splits],
        })
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    referenced = len(clips) + sum(1 for p in problems if p.reason.startswith("malformed"))
    return IndexResult(table, problems, referenced, recounted)


def problems_frame(problems: list[Problem]) -> pd.DataFrame:
    return pd.DataFrame([[p.file, p.line, p.path, p.reason] for p in problems], columns=DROPPED_COLUMNS)


def check_drop_fraction(result: IndexResult, ds: DatasetConfig) -> None:
    """Fail clearly when more clips than allowed are unusable; a handful of bad clips is only reported."""
    dropped = len(result.problems)
    total = max(result.referenced, 1)
    if dropped / total > ds.max_drop_fraction:
        shown = "\n".join(f"  {p.file}:{p.line}: {p.reason}" for p in result.problems[:20])
        more = f"\n  ... and {dropped - 20} more" if dropped > 20 else ""
        raise StageError(
            f"dataset '{ds.name}': {dropped} of {total} clips are unusable ({dropped / total:.1%}), more than "
            f"max_drop_fraction = {ds.max_drop_fraction:.1%}:\n{shown}{more}\n"
            f"Fix the dataset root / path_prefix in its config, or the list files, or raise max_drop_fraction."
        )

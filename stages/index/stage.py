"""Build the clip index of a dataset from its lists (or a folder of videos), recounting frames from disk."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from stages.common.datasets import DatasetConfig, resolve_list_path
from stages.common.errors import StageError
from stages.common.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, count_frames
from stages.common.schemas import DROPPED_COLUMNS, INDEX_SCHEMA
from stages.index.annotations import ListEntry, Problem, read_list, rewrite_prefix

_READABLE_PART = re.compile(r"[A-Za-z0-9_.]+")
_UNREADABLE_RUN = re.compile(r"[^A-Za-z0-9_.]+")
ID_HASH_CHARS = 12  # 48 bits: a chance collision among 10^5 clips is about 2e-5, and stops the index if it happens


@dataclass(frozen=True)
class Recount:
    """A clip whose listed frame count differs from the files on disk (disk wins)."""

    clip_id: str
    listed: int
    on_disk: int
    file: str
    line: int


@dataclass
class IndexResult:
    table: pa.Table
    problems: list[Problem]  # every list line or clip that could not be used
    recounts: list[Recount]
    hidden: dict[str, list[str]]  # clip id -> hidden files skipped in its frame folder

    @property
    def kept(self) -> int:
        return self.table.num_rows

    @property
    def dropped_clips(self) -> list[str]:
        """Distinct clips that are not in the index (a bad clip named by five lists counts once)."""
        kept = set(self.table.column("clip_id").to_pylist())
        return sorted({p.clip_id or f"{p.file}:{p.line}" for p in self.problems} - kept)

    @property
    def referenced(self) -> int:
        """Distinct clips the lists or the folder named."""
        return self.kept + len(self.dropped_clips)


def clip_id_for(ds: DatasetConfig, source: str) -> str:
    """A text id from the source's path below ``root/id_root``, injective over paths and never a bare number.

    A path whose parts are all ``[A-Za-z0-9_.]`` reads as those parts joined by ``-`` ('dfew-00001',
    'ferv39k-Action-Happy-0267', 'demo-clip7.mp4'). Any other path (a space, a ``-``, a non-ASCII name) keeps its
    readable characters and adds, after ``--``, a short sha256 of the relative path ('demo-a-b--3f0c...'):
    readable ids never contain ``--``, so the two kinds cannot meet, and ``a b``, ``a-b`` and ``a/b`` differ.
    """
    base = Path(os.path.normpath(Path(ds.root) / ds.id_root))
    try:
        rel = Path(os.path.normpath(source)).relative_to(base)
    except ValueError:
        rel = Path(os.path.normpath(source))
    if rel.parts and all(_READABLE_PART.fullmatch(part) for part in rel.parts):
        return f"{ds.id_prefix}-" + "-".join(rel.parts)
    digest = hashlib.sha256(rel.as_posix().encode("utf-8")).hexdigest()[:ID_HASH_CHARS]
    readable = _UNREADABLE_RUN.sub("-", rel.as_posix()).strip("-.")
    return f"{ds.id_prefix}-{readable}--{digest}" if readable else f"{ds.id_prefix}--{digest}"


@dataclass
class _Clip:
    entry: ListEntry
    source: str
    splits: list[tuple[str, str]]


def _same_path(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b)


def _check_collision(clip_id: str, known: _Clip, entry: ListEntry, source: str) -> None:
    if not _same_path(known.source, source):
        raise StageError(
            f"clip id {clip_id} names two different clips: {known.source} ({known.entry.file}:{known.entry.line}) "
            f"and {source} ({entry.file}:{entry.line}). Rename one of them (and fix the list), then rerun the index.")


def _entries_from_lists(ds: DatasetConfig, problems: list[Problem]) -> dict[str, _Clip]:
    clips: dict[str, _Clip] = {}
    for fold, lists in ds.folds.items():
        for split, list_file in (("train", lists.train), ("test", lists.test)):
            entries, bad = read_list(resolve_list_path(ds, list_file))
            problems.extend(replace(p, clip_id=clip_id_for(ds, rewrite_prefix(p.path, ds.path_prefix_from, ds.local_prefix)))
                            if p.path else p for p in bad)
            seen_here: set[str] = set()
            for entry in entries:
                source = rewrite_prefix(entry.path, ds.path_prefix_from, ds.local_prefix)
                clip_id = clip_id_for(ds, source)
                known = clips.get(clip_id)
                if known is not None:
                    _check_collision(clip_id, known, entry, source)
                if clip_id in seen_here:
                    problems.append(Problem(entry.file, entry.line, entry.path,
                                            f"duplicate of an earlier line of the same list ({clip_id})", clip_id))
                    continue
                seen_here.add(clip_id)
                if known is None:
                    clips[clip_id] = _Clip(entry, source, [(fold, split)])
                elif known.entry.label != entry.label:
                    problems.append(Problem(entry.file, entry.line, entry.path,
                                            f"label {entry.label} disagrees with label {known.entry.label} at "
                                            f"{known.entry.file}:{known.entry.line}", clip_id))
                else:
                    known.splits.append((fold, split))
    return clips


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _entries_from_folder(ds: DatasetConfig, problems: list[Problem]) -> dict[str, _Clip]:
    """Videos or frame folders below class-named subfolders (``root/happiness/clip.mp4``), all in split 'test'.
    Hidden files and folders (``._clip.mp4``, ``.DS_Store``) are skipped."""
    root = Path(ds.root)
    if not root.is_dir():
        raise StageError(f"{root}: dataset folder not found. Set 'root' in the dataset config or put the videos there.")
    class_of = {name.lower(): i for i, name in enumerate(ds.classes)}
    clips: dict[str, _Clip] = {}
    for path in sorted(root.rglob("*")):
        if _is_hidden(path, root):
            continue
        is_video = path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS
        is_frame_dir = path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                                             for p in path.iterdir())
        if not (is_video or is_frame_dir):
            continue
        top = path.relative_to(root).parts[0].lower()
        label = class_of.get(top, -1)
        entry = ListEntry(str(root), 0, str(path), -1, label)
        clip_id = clip_id_for(ds, str(path))
        if clip_id in clips:
            _check_collision(clip_id, clips[clip_id], entry, str(path))
        clips[clip_id] = _Clip(entry, str(path), [("all", "test")])
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
    rows, recounts, hidden = [], [], {}
    for clip_id, clip in tqdm(sorted(clips.items()), desc=f"index {ds.name}", unit="clip", disable=not progress):
        entry = clip.entry
        if not 0 <= entry.label < len(ds.classes):
            problems.append(Problem(entry.file, entry.line, entry.path,
                                    f"label {entry.label} out of range 0..{len(ds.classes) - 1} for {len(ds.classes)} classes",
                                    clip_id))
            continue
        try:
            kind, n_frames, hidden_files = count_frames(clip.source)
        except StageError as err:
            problems.append(Problem(entry.file, entry.line, entry.path, str(err), clip_id))
            continue
        if n_frames == 0:
            problems.append(Problem(entry.file, entry.line, entry.path, f"{clip.source}: no frames", clip_id))
            continue
        if hidden_files:
            hidden[clip_id] = hidden_files
        if entry.listed_frames not in (-1, n_frames):
            recounts.append(Recount(clip_id, entry.listed_frames, n_frames, entry.file, entry.line))
        rows.append({
            "clip_id": clip_id, "source": clip.source, "source_kind": kind, "n_frames": n_frames,
            "label": entry.label, "class_name": ds.classes[entry.label],
            "splits": [{"fold": f, "split": s} for f, s in clip.splits],
        })
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    return IndexResult(table, problems, recounts, hidden)


def problems_frame(problems: list[Problem]) -> pd.DataFrame:
    return pd.DataFrame([[p.file, p.line, p.path, p.reason, p.clip_id] for p in problems], columns=DROPPED_COLUMNS)


def check_drop_fraction(result: IndexResult, ds: DatasetConfig, report: str = "") -> None:
    """Fail clearly when more clips than allowed are unusable; a handful of bad clips is only reported.
    Clips count once however many lists name them; ``report`` names the CSV listing every problem."""
    dropped, total = len(result.dropped_clips), max(result.referenced, 1)
    if dropped / total > ds.max_drop_fraction:
        shown = "\n".join(f"  {p.file}:{p.line}: {p.reason}" for p in result.problems[:20])
        more = f"\n  ... and {len(result.problems) - 20} more" if len(result.problems) > 20 else ""
        where = f" (all listed in {report})" if report else ""
        raise StageError(
            f"dataset '{ds.name}': {dropped} of {total} clips are unusable ({dropped / total:.1%}), more than "
            f"max_drop_fraction = {ds.max_drop_fraction:.1%}; {len(result.problems)} list lines or clips had "
            f"problems{where}:\n{shown}{more}\n"
            f"Fix the dataset root / path_prefix in its config, or the list files, or raise max_drop_fraction."
        )

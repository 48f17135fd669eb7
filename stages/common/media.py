"""What counts as a frame file or a video, in which order frames come, and how many a source has."""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from stages.common.errors import StageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

_NUMBER = re.compile(r"(\d+)")


def numeric_key(name: str) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (DFER-CLIP's plain string sort does not)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in _NUMBER.split(name))


@dataclass(frozen=True)
class FrameFolder:
    """What a frame folder holds: image files in temporal (numeric) order, hidden files skipped as DFER-CLIP's
    ``glob('*')`` skips them (macOS ``._00001.jpg``, ``.DS_Store``), other entries, and zero-byte images."""

    files: list[str]
    hidden: list[str]
    other: list[str]
    empty: list[str]


def scan_frame_folder(folder: str | Path, check_sizes: bool = False) -> FrameFolder:
    """The folder's entries by kind; ``check_sizes`` also lists zero-byte images (one stat per file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"{folder}: frame folder not found. Fix the path in the annotation list or remove the clip.")
    images, hidden, other = [], [], []
    with os.scandir(folder) as entries:  # scandir: no stat call per file, which matters for 1000-frame folders
        for entry in entries:
            if entry.name.startswith("."):
                hidden.append(entry.name)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                images.append(entry)
            else:
                other.append(entry.name)
    images.sort(key=lambda e: numeric_key(e.name))
    empty = [e.name for e in images if e.stat().st_size == 0] if check_sizes else []
    return FrameFolder([e.path for e in images], sorted(hidden), sorted(other), empty)


def list_frame_files(folder: str | Path) -> list[str]:
    """Image files of a frame folder in temporal (numeric) order; hidden files are skipped (the index stage
    reports them), other non-image entries are ignored with a warning."""
    return _frame_files(folder, scan_frame_folder(folder))


def _frame_files(folder, scan: FrameFolder) -> list[str]:
    if scan.other:
        warnings.warn(f"{folder}: ignoring {len(scan.other)} non-image entries ({', '.join(scan.other[:5])})")
    if not scan.files:
        raise StageError(f"{folder}: no image files. Re-extract the frames or remove the clip from the annotation list.")
    return scan.files


def source_kind(path: str | Path) -> str:
    """``frames`` for a folder, ``video`` for a video file; StageError for anything else."""
    path = Path(path)
    if path.is_dir():
        return "frames"
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    if not path.exists():
        raise StageError(f"{path}: no such file or folder.")
    raise StageError(f"{path}: neither a frame folder nor a video ({', '.join(sorted(VIDEO_EXTENSIONS))}).")


def count_video_frames(path: str | Path) -> int:
    """Frames of the first video stream, counted from the container's packets (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise StageError(f"{path}: the file has no video stream.")
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise StageError(f"{path}: unreadable video ({err}). Re-encode or re-download it, or remove it from the list.") from err


def count_frames(path: str | Path) -> tuple[str, int, list[str]]:
    """(kind, number of frames, hidden files skipped) of a frame folder or video file; StageError when a frame
    file is empty (0 bytes), which no decoder can read."""
    kind = source_kind(path)
    if kind == "video":
        return kind, count_video_frames(path), []
    scan = scan_frame_folder(path, check_sizes=True)
    if scan.empty:
        raise StageError(f"{path}: {len(scan.empty)} frame files are empty, 0 bytes ({', '.join(scan.empty[:5])}). "
                         "Re-extract or re-copy the frames, or remove the clip from the annotation list.")
    return kind, len(_frame_files(path, scan)), scan.hidden

"""What counts as a frame file or a video, in which order frames come, and how many a source has."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from stages.common.errors import StageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})

_NUMBER = re.compile(r"(\d+)")


def numeric_key(name: str) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (DFER-CLIP's plain string sort does not)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in _NUMBER.split(name))


def list_frame_files(folder: str | Path) -> list[str]:
    """Image files of a frame folder in temporal (numeric) order; non-image entries are ignored with a warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"{folder}: frame folder not found. Fix the path in the annotation list or remove the clip.")
    images, ignored = [], []
    with os.scandir(folder) as entries:  # scandir: no stat call per file, which matters for 1000-frame folders
        for entry in entries:
            is_image = os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file()
            (images if is_image else ignored).append(entry)
    if ignored:
        warnings.warn(f"{folder}: ignoring {len(ignored)} non-image entries ({', '.join(sorted(e.name for e in ignored)[:5])})")
    if not images:
        raise StageError(f"{folder}: no image files. Re-extract the frames or remove the clip from the annotation list.")
    return [e.path for e in sorted(images, key=lambda e: numeric_key(e.name))]


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


def count_frames(path: str | Path) -> tuple[str, int]:
    """(kind, number of frames) of a frame folder or video file."""
    kind = source_kind(path)
    if kind == "frames":
        return kind, len(list_frame_files(path))
    return kind, count_video_frames(path)

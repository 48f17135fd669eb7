"""Parse DFER-CLIP's annotation lists: ``<path> <num_frames> <label>``, one clip per line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.common.errors import StageError


@dataclass(frozen=True)
class ListEntry:
    file: str
    line: int  # 1-based
    path: str
    listed_frames: int
    label: int


@dataclass(frozen=True)
class Problem:
    """A line or clip that cannot be used, and why."""

    file: str
    line: int
    path: str
    reason: str
    clip_id: str = ""  # the clip the line names, when it names one


def parse_line(text: str, file: str, line: int) -> ListEntry | Problem | None:
    """One list line -> entry, problem, or None for a blank line."""
    text = text.strip()
    if not text:
        return None
    fields = text.split()
    if len(fields) > 3 and all(f.lstrip("-").isdigit() for f in fields[-2:]):
        path = text.rsplit(None, 2)[0]
        return Problem(file, line, path, f"the path {path!r} contains spaces: the lists are split on spaces "
                                         "(DFER-CLIP's loader too), so rename it without spaces and fix the list")
    if len(fields) != 3:
        return Problem(file, line, fields[0] if fields else "", f"malformed line: expected 3 fields '<path> <num_frames> <label>', got {len(fields)}")
    path, frames, label = fields
    try:
        return ListEntry(file, line, path, int(frames), int(label))
    except ValueError:
        return Problem(file, line, path, f"malformed line: num_frames {frames!r} and label {label!r} must be integers")


def read_list(path: str | Path) -> tuple[list[ListEntry], list[Problem]]:
    """All entries and problems of one list file; CRLF and a missing final newline are fine."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise StageError(f"{path}: annotation list not found. Put the dataset's lists there or fix 'folds' in its config.") from err
    except UnicodeDecodeError as err:
        raise StageError(f"{path}: not UTF-8 text ({err}). Re-save the list as UTF-8.") from err
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        parsed = parse_line(raw, str(path), number)
        if isinstance(parsed, ListEntry):
            entries.append(parsed)
        elif isinstance(parsed, Problem):
            problems.append(parsed)
    return entries, problems


def rewrite_prefix(path: str, old: str, new: str) -> str:
    """Swap the authors' absolute dataset prefix for the local root."""
    if old and (path == old or path.startswith(old.rstrip("/") + "/")):
        return new.rstrip("/") + path[len(old.rstrip("/")):]
    return path

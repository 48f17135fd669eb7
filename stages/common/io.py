"""Atomic file output and Parquet read/write with schema checks.

Every stage writes through these helpers so that an interrupted job never leaves a half-written
file behind: data goes to a temporary file in the destination folder, then ``os.replace`` renames it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from stages.common.errors import StageError

MADE_WITH = b"fineclip.made_with"  # schema metadata key of write_parquet's made_with


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600 files; outputs should get the usual permissions (shared cluster file systems).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(table: pa.Table, path: str | os.PathLike, schema: pa.Schema | None = None,
                  made_with: dict | None = None) -> None:
    """Write ``table`` (cast to ``schema`` when given) atomically with zstd compression; ``made_with`` (the result
    settings of the stages behind the file, see :func:`read_made_with`) goes into its schema metadata."""
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    if made_with:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), MADE_WITH: canonical_json(made_with)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_made_with(*paths: str | os.PathLike) -> dict:
    """``{stage: settings}`` recorded by :func:`write_parquet` in these files, merged; {} for files without any. Each
    stage carries its inputs' record forward, so the features cache knows its frames and faces settings, the approved
    captions their captions and refine settings. Two files recording one stage differently were made by different
    settings, and mixing them is an error."""
    merged: dict = {}
    first: dict = {}
    for path in paths:
        metadata = _read_schema(path).metadata or {}
        for stage, settings in json.loads(metadata.get(MADE_WITH, b"{}")).items():
            if stage in merged and merged[stage] != settings:
                raise StageError(f"{first[stage]} and {path} were made with different {stage} settings; rerun the "
                                 f"{stage} stage for both (snakemake does when its settings change).")
            merged.setdefault(stage, settings)
            first.setdefault(stage, path)
    return merged


def _unreadable(path: str | os.PathLike, err: Exception) -> StageError:
    return StageError(f"{path}: not a readable Parquet file ({err}). Delete it and rerun the stage that makes it.")


def _read_schema(path: str | os.PathLike) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise _unreadable(path, err) from err


def read_parquet(path: str | os.PathLike, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file; when ``schema`` is given, fail clearly if the file does not carry its columns."""
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: file not found. Run the stage that produces it first (snakemake builds it for you).")
    present = set(_read_schema(path).names)  # absent columns are reported below, as an old file
    try:
        table = pq.read_table(path, columns=None if columns is None else [c for c in columns if c in present])
    except (pa.ArrowInvalid, OSError) as err:
        raise _unreadable(path, err) from err
    if schema is not None:
        wanted = [f for f in schema if columns is None or f.name in columns]
        missing = [f.name for f in wanted if f.name not in table.column_names]
        if missing:
            raise StageError(
                f"{path}: missing columns {missing}; it was written by an older version of the pipeline. "
                "Delete it and rerun the stage that makes it."
            )
        table = table.select([f.name for f in wanted]).cast(pa.schema(wanted))
    return table


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings whatever their key order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))

"""Stable assignment of clips to shards, so a cluster runs per-clip stages in parallel."""
from __future__ import annotations

import re
import zlib
from pathlib import Path

_SHARD_NAME = re.compile(r"^(\d+)-of-(\d+)$")
SHARDED_FOLDERS = ("frames", "faces", "captions/raw", "features")  # under results/{ds}/


def shard_names(count: int) -> list[str]:
    return [f"{i:03d}-of-{count:03d}" for i in range(count)]


def parse_shard(name: str) -> tuple[int, int]:
    match = _SHARD_NAME.match(name)
    if not match:
        raise ValueError(f"shard name {name!r} is not of the form 003-of-016")
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise ValueError(f"shard name {name!r}: index out of range")
    return index, count


def shard_of(clip_id: str, count: int) -> int:
    """crc32 of the id: adding clips to a dataset does not move the others to new shards."""
    return zlib.crc32(clip_id.encode("utf-8")) % count


def stale_shard_files(dataset_results: str | Path, count: int) -> list[Path]:
    """Shard files of a dataset's results made for another shard count: nothing reads them once the count changed."""
    stale = []
    for folder in SHARDED_FOLDERS:
        for path in sorted((Path(dataset_results) / folder).glob("*-of-*.parquet")):
            match = _SHARD_NAME.match(path.stem)
            if match and int(match.group(2)) != count:
                stale.append(path)
    return stale


def remove_stale_shards(counts: dict[str, int], results: str | Path = "results") -> list[Path]:
    """Delete the stale shard files of each dataset (name -> configured shard count); return what was deleted."""
    removed = []
    for dataset, count in counts.items():
        for path in stale_shard_files(Path(results) / dataset, count):
            path.unlink()
            removed.append(path)
    return removed

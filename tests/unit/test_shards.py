"""Shard files of an earlier shard count are found and removed, never left for someone to read by mistake."""
from __future__ import annotations

from stages.common.shards import remove_stale_shards, stale_shard_files


def test_files_of_another_shard_count_are_stale(tmp_path):
    names = {"frames": ["000-of-002", "001-of-002", "000-of-003"], "captions/raw": ["001-of-002", "002-of-003"],
             "features": ["000-of-003"], "review": ["000-of-002"]}
    for folder, stems in names.items():
        (tmp_path / "demo" / folder).mkdir(parents=True)
        for stem in stems:
            (tmp_path / "demo" / folder / f"{stem}.parquet").write_bytes(b"")
    (tmp_path / "demo" / "frames" / "notes-of-me.parquet").write_bytes(b"")
    stale = [p.relative_to(tmp_path / "demo").as_posix() for p in stale_shard_files(tmp_path / "demo", 3)]
    assert stale == ["frames/000-of-002.parquet", "frames/001-of-002.parquet", "captions/raw/001-of-002.parquet"]
    removed = remove_stale_shards({"demo": 3, "absent": 4}, results=tmp_path)
    assert len(removed) == 3 and not any(p.exists() for p in removed)
    assert (tmp_path / "demo/review/000-of-002.parquet").exists()  # not a sharded stage's folder
    assert stale_shard_files(tmp_path / "demo", 3) == []

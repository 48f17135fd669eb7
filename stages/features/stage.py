"""Features stage: the visual training cache, one row per clip of a shard (FEATURES_SCHEMA).

Joins, on ``clip_id``, the frames shard (JPEGs and sampling plans), the faces shard of the same shard
(landmarks, parsing maps, face status, aligned on the same ``frame_indices``) and the index (label, class
name, fold membership). Clips flagged ``no_face`` are kept: the trainer gives their frames blank maps.
The landmark images (one dot per landmark at the stored frame's size) are rendered here, once, rather than
every epoch in the trainer's loader, and stored with the parsing classes in one map per frame (``face_maps``), so
the loader decompresses one buffer per frame for both. Everything else stays in Arrow; bytes are not copied through
Python objects.

Captions are deliberately not joined here: models that read them take ``captions/approved.parquet`` as a
separate input, so editing a prompt, a lexicon or a review decision does not retrain models without text.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.common.errors import StageError
from stages.common.io import read_made_with, read_parquet, write_parquet
from stages.common.schemas import FACES_SCHEMA, FEATURES_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA, NUM_LANDMARKS
from stages.faces.parsing import decode_parsing
from stages.faces.render import encode_face_map, landmark_mask

FRAME_COLUMNS = ["clip_id", "n_frames", "label", "test_indices", "train_candidates", "frame_indices", "jpeg",
                 "width", "height"]
FACE_COLUMNS = ["clip_id", "frame_indices", "landmarks", "parsing_png", "face_status", "clip_flag"]
NO_FACE = "no_face"


def _rows_of(table: pa.Table, ids: list[str], what: str) -> tuple[list[int], list[str]]:
    """Row number in ``table`` of each id (-1 when absent) and the ids that are absent; duplicates are an error."""
    column = table.column("clip_id").to_pylist()
    where = {clip_id: i for i, clip_id in enumerate(column)}
    if len(where) != len(column):
        dup = sorted(c for c, n in Counter(column).items() if n > 1)
        raise StageError(f"{what}: clip ids occur more than once ({', '.join(dup[:5])}); rerun the stage that makes it.")
    rows = [where.get(clip_id, -1) for clip_id in ids]
    return rows, [clip_id for clip_id, row in zip(ids, rows) if row < 0]


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f", ... ({len(ids)} in all)" if len(ids) > 5 else "")


def check_alignment(frames: pa.Table, faces: pa.Table, frames_path: str, faces_path: str) -> None:
    """Faces rows (already in frames order) must list the same frames as the frames rows, one entry per frame."""
    bad = [c for c, a, b in zip(frames.column("clip_id").to_pylist(), frames.column("frame_indices").to_pylist(),
                                faces.column("frame_indices").to_pylist()) if a != b]
    if bad:
        raise StageError(
            f"{faces_path}: frame_indices differ from {frames_path} for clips {_some(bad)}; the faces shard is older "
            f"than the frames shard. Delete {faces_path} and rerun (snakemake reruns the faces stage)."
        )
    n = pc.list_value_length(frames.column("frame_indices"))
    for table, column, path in ((frames, "jpeg", frames_path), (faces, "landmarks", faces_path),
                                (faces, "parsing_png", faces_path), (faces, "face_status", faces_path)):
        wrong = pc.invert(pc.equal(pc.list_value_length(table.column(column)), n))
        if pc.any(wrong).as_py():
            ids = pc.filter(frames.column("clip_id"), wrong).to_pylist()
            raise StageError(f"{path}: column {column} does not have one entry per frame for clips {_some(ids)}. "
                             f"Delete {path} and rerun the stage that makes it.")


def face_maps(parsing_png: pa.ListArray | pa.ChunkedArray, landmarks: pa.ListArray | pa.ChunkedArray,
              status: pa.ListArray | pa.ChunkedArray, heights: list[int], widths: list[int]) -> pa.ListArray:
    """Per clip, one ``encode_face_map`` per frame: its parsing classes and ``landmark_mask`` dots at the clip's
    stored size (no dots where the face is "missing"), aligned with the clip's ``landmarks``."""
    out = []
    for pngs, points, statuses, height, width in zip(parsing_png.to_pylist(), landmarks.to_pylist(), status.to_pylist(),
                                                     heights, widths):
        maps = []
        for png, p, s in zip(pngs, points, statuses):
            classes = decode_parsing(png)
            if classes.shape != (height, width):
                raise StageError(f"a parsing map is {classes.shape[1]}x{classes.shape[0]}, its frame {width}x{height}; "
                                 "the faces shard is older than the frames shard: delete it and rerun.")
            dots = (np.zeros_like(classes) if s == "missing" else
                    landmark_mask(np.asarray(p, np.float32).reshape(NUM_LANDMARKS, 2), height, width))
            maps.append(encode_face_map(classes, dots))
        out.append(maps)
    return pa.array(out, pa.list_(pa.binary()))


def build(frames_path: str, faces_path: str, index_path: str) -> tuple[pa.Table, str]:
    """The features table of one shard (FEATURES_SCHEMA) and its one-line summary."""
    frames = read_parquet(frames_path, FRAMES_SCHEMA, columns=FRAME_COLUMNS)
    faces = read_parquet(faces_path, FACES_SCHEMA, columns=FACE_COLUMNS)
    index = read_parquet(index_path, INDEX_SCHEMA, columns=["clip_id", "label", "class_name", "splits"])
    ids = frames.column("clip_id").to_pylist()
    _rows_of(frames, ids, frames_path)  # duplicate check

    face_rows, missing = _rows_of(faces, ids, faces_path)
    if missing:
        raise StageError(f"{faces_path}: no faces row for clips {_some(missing)} of {frames_path}. The faces shard "
                         f"is older than the frames shard: delete {faces_path} and rerun (snakemake reruns the faces stage).")
    if faces.num_rows != len(ids):
        extra = sorted(set(faces.column("clip_id").to_pylist()) - set(ids))
        raise StageError(f"{faces_path}: clips {_some(extra)} are not in {frames_path}. Delete {faces_path} and rerun.")
    faces = faces.take(face_rows)
    check_alignment(frames, faces, frames_path, faces_path)

    index_rows, missing = _rows_of(index, ids, index_path)
    if missing:
        raise StageError(f"{frames_path}: clips {_some(missing)} are not in {index_path}; the frames shard is older "
                         f"than the index. Delete {frames_path} and rerun (snakemake reruns frames, faces and features).")
    index = index.take(index_rows)
    relabelled = pc.filter(frames.column("clip_id"), pc.not_equal(frames.column("label"), index.column("label")))
    if len(relabelled):
        raise StageError(f"{frames_path}: labels of clips {_some(relabelled.to_pylist())} differ from {index_path}; "
                         f"delete {frames_path} and rerun.")

    columns = {
        "clip_id": frames.column("clip_id"),
        "label": index.column("label"),
        "class_name": index.column("class_name"),
        "splits": index.column("splits"),
        **{c: frames.column(c) for c in ("n_frames", "test_indices", "train_candidates", "frame_indices", "jpeg",
                                         "width", "height")},
        **{c: faces.column(c) for c in ("landmarks", "face_status")},
        "face_maps": face_maps(faces.column("parsing_png"), faces.column("landmarks"), faces.column("face_status"),
                               frames.column("height").to_pylist(), frames.column("width").to_pylist()),
    }
    table = pa.table(columns).select(FEATURES_SCHEMA.names).cast(FEATURES_SCHEMA)

    splits = Counter((s["fold"], s["split"]) for row in index.column("splits").to_pylist() for s in row)
    no_face = pc.sum(pc.equal(faces.column("clip_flag"), NO_FACE)).as_py() or 0
    per_split = ", ".join(f"{fold} {split} {n}" for (fold, split), n in sorted(splits.items()))
    summary = f"{len(ids)} clips, {no_face} no_face; {per_split or 'no splits'}"
    return table, summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.features", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="results/{ds}/frames/{shard}.parquet")
    parser.add_argument("--faces", required=True, help="results/{ds}/faces/{shard}.parquet (same shard)")
    parser.add_argument("--index", required=True, help="results/{ds}/index.parquet")
    parser.add_argument("--out", required=True, help="results/{ds}/features/{shard}.parquet")
    args = parser.parse_args(argv)
    table, summary = build(args.frames, args.faces, args.index)
    write_parquet(table, args.out, FEATURES_SCHEMA, read_made_with(args.frames, args.faces))
    print(f"features {Path(args.out).stem}: {summary} -> {args.out}")

"""Frames stage: for each clip of one shard, decode the sampled frames, face-crop (a face track through the clip,
stages.frames.face_track), resize, store JPEGs.

Input ``results/{ds}/index.parquet`` (INDEX_SCHEMA); output ``results/{ds}/frames/{shard}.parquet``
(FRAMES_SCHEMA). Per clip we keep the test indices (centre of each segment), the training candidates of
each segment (every frame of it by default, or ``K`` evenly spread ones), and the JPEG of every distinct
frame among them.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

import cv2
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from stages.common.config import config_object
from stages.common.errors import StageError
from stages.common.face_detect import detect_faces, square_box
from stages.common.io import read_parquet, write_parquet
from stages.common.provenance import stage_record
from stages.common.schemas import FRAMES_SCHEMA, INDEX_SCHEMA
from stages.common.shards import parse_shard, shard_of
from stages.frames import sampling
from stages.frames.face_track import track_face
from stages.frames.decode import read_frames

DEFAULTS = {
    "num_segments": 16,
    "candidates_per_segment": sampling.ALL,  # exact DFER-CLIP training draw; an integer K is cheaper
    "size": 224,
    "jpeg_quality": 90,
    "face_crop": {"enabled": False, "margin": 0.25, "upsample": 1, "detections": 8, "cut_threshold": 0.4,
                  "max_filled_fraction": 0.5},
    "max_failed_fraction": 0.05,
}


def load_config(cfg: dict) -> dict:
    """``cfg`` over DEFAULTS (one level deep for ``face_crop``); unknown keys are an error, not a silent no-op."""
    def merge(defaults: dict, given, where: str) -> dict:
        if not isinstance(given, dict):
            raise StageError(f"frames config{where} must be a mapping with keys {sorted(defaults)}, got {given!r}.")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise StageError(f"frames config{where}: unknown keys {unknown}; known keys are {sorted(defaults)}.")
        return {k: merge(v, given.get(k, {}), f".{k}") if isinstance(v, dict) else given.get(k, v) for k, v in defaults.items()}

    out = merge(DEFAULTS, cfg, "")
    k = out["candidates_per_segment"]
    if k != sampling.ALL and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise StageError(f"frames config: candidates_per_segment must be '{sampling.ALL}' (every frame of each "
                         f"segment, DFER-CLIP's exact draw) or an integer >= 1, got {k!r}.")
    if out["num_segments"] < 1 or out["size"] < 1:
        raise StageError("frames config: num_segments and size must be >= 1.")
    if not 0 <= out["max_failed_fraction"] <= 1:
        raise StageError("frames config: max_failed_fraction must lie in [0, 1].")
    face = out["face_crop"]
    if not (0 <= face["max_filled_fraction"] <= 1 and 0 < face["cut_threshold"] <= 1 and face["detections"] >= 1):
        raise StageError("frames config: face_crop needs max_filled_fraction in [0, 1], cut_threshold in (0, 1] and "
                         f"detections >= 1, got {face}.")
    return out


def face_crop(frames: Sequence[np.ndarray], frame_numbers: Sequence[int], face: dict, where: str
              ) -> tuple[list | None, dict]:
    """Square crop boxes (one per frame; None when no frame has a face) from the clip's face track, and the
    FRAMES_SCHEMA crop columns. A clip without a face at ``upsample`` is tried again at ``upsample + 1``."""
    for up in (face["upsample"], face["upsample"] + 1):
        track = track_face(frames, lambda rgb: [f.box for f in detect_faces(rgb, up)], face["detections"],
                           face["cut_threshold"])
        if track.boxes[0] is not None:
            break
    filled = track.filled_fraction
    flag = "no_face" if track.boxes[0] is None else "face_filled" if filled > face["max_filled_fraction"] else ""
    columns = {"crop_status": track.status, "scene_cuts": [int(frame_numbers[i]) for i in track.cuts],
               "crop_filled_fraction": filled, "crop_flag": flag}
    if flag == "no_face":
        warnings.warn(f"{where}: no face found; keeping whole frames.")
        return None, columns
    if flag:
        warnings.warn(f"{where}: the face was not found in {track.status.count('filled')} of {len(frames)} frames "
                      f"(more than max_filled_fraction={face['max_filled_fraction']}); their crops repeat the nearest "
                      "tracked box. The clip is flagged in the review sheet.")
    boxes = [square_box(box, face["margin"], rgb.shape[1], rgb.shape[0]) for box, rgb in zip(track.boxes, frames)]
    return boxes, columns


def encode_frame(rgb: np.ndarray, box, size: int, quality: int) -> bytes:
    """Crop to ``box`` (None = whole frame), resize to ``size`` x ``size``, encode JPEG."""
    if box is not None:
        x0, y0, x1, y1 = box
        rgb = rgb[y0:y1, x0:x1]
    shrink = rgb.shape[0] > size or rgb.shape[1] > size
    img = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def process_clip(row: dict, cfg: dict) -> dict:
    """One FRAMES_SCHEMA row for an INDEX_SCHEMA row; StageError when the clip cannot be read."""
    n, segments, k = row["n_frames"], cfg["num_segments"], cfg["candidates_per_segment"]
    if n < 1:
        raise StageError(f"{row['source']}: the index says it has {n} frames. Rerun the index stage.")
    test = sampling.test_indices(n, segments)
    candidates = sampling.train_candidates(n, segments, k)
    needed = sampling.needed_frames(n, segments, k)
    frames = read_frames(row["source"], row["source_kind"], needed, n_frames=n)
    boxes, crop = None, {"crop_status": None, "scene_cuts": None, "crop_filled_fraction": None, "crop_flag": ""}
    if cfg["face_crop"]["enabled"]:
        boxes, crop = face_crop(frames, needed, cfg["face_crop"], f"{row['source']} (clip {row['clip_id']})")
    return {
        "clip_id": row["clip_id"],
        "source": row["source"],
        "source_kind": row["source_kind"],
        "n_frames": n,
        "label": row["label"],
        "test_indices": test.tolist(),
        "train_candidates": candidates.ravel().tolist(),
        "frame_indices": needed.tolist(),
        "jpeg": [encode_frame(f, None if boxes is None else boxes[i], cfg["size"], cfg["jpeg_quality"])
                 for i, f in enumerate(frames)],
        "crop_boxes": None if boxes is None else [[float(v) for v in box] for box in boxes],
        **crop,
        "width": cfg["size"],
        "height": cfg["size"],
    }


def run(index_path: str, shard: str, cfg: dict, out: str) -> None:
    made_with = stage_record("frames", cfg)
    cfg = load_config(cfg)
    try:
        shard_index, shard_count = parse_shard(shard)
    except ValueError as err:
        raise StageError(str(err)) from err
    index = read_parquet(index_path, INDEX_SCHEMA).to_pylist()
    rows = [r for r in index if shard_of(r["clip_id"], shard_count) == shard_index]
    records, failed = [], []
    for row in tqdm(rows, desc=f"frames {shard}", unit="clip", file=sys.stderr, mininterval=5):
        try:
            records.append(process_clip(row, cfg))
        except StageError as err:
            failed.append(f"{row['clip_id']}: {err}")  # the message names the file
            tqdm.write(f"failed: {failed[-1]}", file=sys.stderr)
    summary = f"{shard}: {len(records)} of {len(rows)} clips written, {len(failed)} failed"
    if failed and len(failed) > cfg["max_failed_fraction"] * len(rows):
        listed = "\n  ".join(failed[:20])
        if len(failed) > 20:
            listed += f"\n  ... and {len(failed) - 20} more (all printed above)"
        raise StageError(
            f"{summary}, more than max_failed_fraction={cfg['max_failed_fraction']}:\n  {listed}\n"
            "Re-extract or remove these clips from the annotation list, or raise frames.max_failed_fraction."
        )
    write_parquet(pa.Table.from_pylist(records, schema=FRAMES_SCHEMA), out, FRAMES_SCHEMA, made_with)
    print(summary + "".join(f"\n  failed: {f}" for f in failed), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.frames", description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="results/{ds}/index.parquet")
    parser.add_argument("--shard", required=True, help="e.g. 000-of-002")
    parser.add_argument("--config-json", default="{}", help="frames config subtree as JSON; missing keys take defaults")
    parser.add_argument("--out", required=True, help="results/{ds}/frames/{shard}.parquet")
    args = parser.parse_args(argv)
    run(args.index, args.shard, config_object(args.config_json), args.out)

"""Faces stage CLI: frames shard in, faces shard out (one row per clip, lists aligned on frame_indices).

Per frame, ``face_status`` says where the landmarks and parsing map come from:
- ``detected``: the backend found a face in this frame;
- ``filled``: no face here; copied from the clip's nearest frame (by source frame number) that has one; score 0;
- ``missing``: nothing to copy (the JPEG does not decode, or no frame of the clip has a face): landmarks are
  all zeros, the parsing map is all background, score 0. A clip whose frames are all missing gets
  ``clip_flag = "no_face"``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import cv2
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from stages.common.config import config_object
from stages.common.errors import StageError
from stages.common.io import read_made_with, read_parquet, write_parquet
from stages.common.provenance import stage_record
from stages.common.schemas import FACES_SCHEMA, FRAMES_SCHEMA, NUM_LANDMARKS
from stages.faces.backends import FaceBackend, FacesConfig, FrameFaces, make_backend
from stages.faces.parsing import encode_parsing

log = logging.getLogger("stages.faces")

NO_FACE = "no_face"


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """RGB uint8 (H, W, 3), or None when the bytes are not a decodable image."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _copy_to_size(face: FrameFaces, height: int, width: int) -> FrameFaces:
    """The same face on a frame of another size (frames of one clip normally share a size)."""
    src_h, src_w = face.parsing.shape
    if (src_h, src_w) == (height, width):
        return FrameFaces(face.landmarks.copy(), face.parsing.copy(), 0.0)
    scale = np.array([width / src_w, height / src_h], dtype=np.float32)
    parsing = cv2.resize(face.parsing, (width, height), interpolation=cv2.INTER_NEAREST)
    return FrameFaces(face.landmarks * scale, parsing, 0.0)


def decode_clip(clip_id: str, frame_indices: Sequence[int], jpegs: Sequence[bytes]) -> list[np.ndarray | None]:
    images = [decode_jpeg(data) for data in jpegs]
    for index, image in zip(frame_indices, images):
        if image is None:
            log.warning("clip %s frame %d: JPEG does not decode; frame marked missing", clip_id, index)
    return images


def analyse_clip(
    clip_id: str, frame_indices: Sequence[int], jpegs: Sequence[bytes], backend: FaceBackend, fallback_size=(224, 224)
) -> dict:
    """One FACES_SCHEMA row for a clip. ``fallback_size`` (H, W) sizes the maps when no frame decodes."""
    images = decode_clip(clip_id, frame_indices, jpegs)
    found = backend.analyse([image for image in images if image is not None]) if any(i is not None for i in images) else []
    return clip_row(clip_id, frame_indices, images, found, backend.name, fallback_size)


def clip_row(clip_id: str, frame_indices: Sequence[int], images: list[np.ndarray | None], found: list[FrameFaces],
             backend_name: str, fallback_size=(224, 224)) -> dict:
    """Assemble a clip's row from the backend's results for its decodable frames (in order)."""
    decoded = [i for i, image in enumerate(images) if image is not None]
    if len(found) != len(decoded):
        raise RuntimeError(f"backend returned {len(found)} results for {len(decoded)} frames of clip {clip_id}")
    results: list[FrameFaces | None] = [None] * len(images)
    for i, face in zip(decoded, found):
        results[i] = face if face.found else None

    with_face = [i for i, face in enumerate(results) if face is not None]
    status = ["missing"] * len(images)
    for i, image in enumerate(images):
        if results[i] is not None:
            status[i] = "detected"
        elif image is not None and with_face:
            nearest = min(with_face, key=lambda j: (abs(frame_indices[j] - frame_indices[i]), j))
            results[i] = _copy_to_size(results[nearest], *image.shape[:2])
            status[i] = "filled"

    sizes = [image.shape[:2] for image in images if image is not None]
    landmarks, parsing_png, scores = [], [], []
    for i, face in enumerate(results):
        if face is None:
            h, w = images[i].shape[:2] if images[i] is not None else (sizes[0] if sizes else fallback_size)
            face = FrameFaces(np.zeros((NUM_LANDMARKS, 2), np.float32), np.zeros((h, w), np.uint8), 0.0)
        landmarks.append(np.asarray(face.landmarks, np.float32).reshape(-1).tolist())
        parsing_png.append(encode_parsing(face.parsing))
        scores.append(float(face.score))
    return {
        "clip_id": clip_id,
        "frame_indices": [int(i) for i in frame_indices],
        "landmarks": landmarks,
        "parsing_png": parsing_png,
        "det_score": scores,
        "face_status": status,
        "backend": backend_name,
        "clip_flag": "" if with_face else NO_FACE,
    }


def decoded_groups(frames: pa.Table, frames_path: str, frames_per_group: int) -> Iterator[list[tuple[dict, list]]]:
    """Clips with their decoded frames, in groups of about ``frames_per_group`` frames. A background thread
    decodes the next clips while the backend works on the current group (cv2 releases the GIL)."""
    def decode(clip: dict) -> tuple[dict, list]:
        if len(clip["frame_indices"]) != len(clip["jpeg"]):
            raise StageError(f"{frames_path}: clip {clip['clip_id']} has {len(clip['frame_indices'])} frame indices "
                             f"but {len(clip['jpeg'])} JPEGs; rerun the frames stage.")
        return clip, decode_clip(clip["clip_id"], clip["frame_indices"], clip["jpeg"])

    clips = (clip for batch in frames.to_batches(max_chunksize=8) for clip in batch.to_pylist())
    group, size = [], 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        for item in pool.map(decode, clips):  # map reads ahead: decoding overlaps with analysis
            group.append(item)
            size += len(item[1])
            if size >= frames_per_group:
                yield group
                group, size = [], 0
    if group:
        yield group


def run(frames_path: str, config: FacesConfig, out_path: str, backend: FaceBackend | None = None,
        progress: bool = True, made_with: dict | None = None) -> Counter:
    """Process a frames shard into a faces shard; return counts of frame statuses, clips and no-face clips.

    Frames of several clips go to the backend together (``batch_size`` frames), so a GPU backend gets full batches.
    ``backend`` (one made from ``config``) lets a caller that processes several shards load it once.
    ``made_with``: the stage settings to record in the shard (:func:`stages.common.io.read_made_with`).
    """
    frames = read_parquet(frames_path, FRAMES_SCHEMA, columns=["clip_id", "frame_indices", "jpeg", "width", "height"])
    backend = backend or make_backend(config)
    rows, counts = [], Counter()
    bar = tqdm(total=frames.num_rows, desc="faces", unit="clip", file=sys.stderr, disable=not progress)
    for group in decoded_groups(frames, frames_path, config.batch_size):
        usable = [image for _, images in group for image in images if image is not None]
        found = iter(backend.analyse(usable) if usable else [])
        for clip, images in group:
            results = [next(found) for image in images if image is not None]
            fallback = (clip["height"] or 224, clip["width"] or 224)
            row = clip_row(clip["clip_id"], clip["frame_indices"], images, results, backend.name, fallback)
            rows.append(row)
            counts.update(row["face_status"])
            counts["clips"] += 1
            counts["frames"] += len(row["face_status"])
            counts[NO_FACE] += row["clip_flag"] == NO_FACE
        bar.update(len(group))
    bar.close()
    write_parquet(pa.Table.from_pylist(rows, schema=FACES_SCHEMA), out_path, FACES_SCHEMA, made_with)
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.faces", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="frames shard (Parquet, FRAMES_SCHEMA)")
    parser.add_argument("--config-json", default="{}", help="the faces config subtree as JSON")
    parser.add_argument("--out", required=True, help="faces shard to write (Parquet, FACES_SCHEMA)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    section = config_object(args.config_json)
    config = FacesConfig.from_dict(section)
    start = time.perf_counter()
    counts = run(args.frames, config, args.out, made_with={**read_made_with(args.frames), **stage_record("faces", section)})
    seconds = time.perf_counter() - start
    print(
        f"faces: {counts['clips']} clips, {counts['frames']} frames: {counts['detected']} detected, "
        f"{counts['filled']} filled, {counts['missing']} missing; {counts[NO_FACE]} clips no_face; "
        f"backend {config.backend}; {1000 * seconds / max(1, counts['frames']):.1f} ms/frame -> {args.out}"
    )

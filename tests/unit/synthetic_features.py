"""Synthetic rows of the features cache (FEATURES_SCHEMA) and of approved captions (APPROVED_SCHEMA) for tests of
the data pipeline and the trainer."""
from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from stages.common.io import write_parquet
from stages.common.schemas import APPROVED_SCHEMA, FEATURES_SCHEMA
from stages.faces.render import encode_face_map, landmark_mask
from stages.frames import sampling

T, K, STORED = 16, 3, 48


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


def grey(frame_number: int) -> np.ndarray:
    """A flat frame whose grey level identifies its source frame number."""
    return np.full((STORED, STORED, 3), (frame_number * 5) % 256, np.uint8)


def clip_row(clip_id, n, splits, label=0, image=grey, parsing=None, landmarks=None, status="detected", k=K):
    """A FEATURES_SCHEMA row; ``image``/``parsing``/``landmarks`` give each stored frame's content; ``k`` training
    candidates per segment (``sampling.ALL``: every frame of each segment)."""
    needed = sampling.needed_frames(n, T, k)
    lm = np.zeros((68, 2), np.float32) if landmarks is None else landmarks
    classes = np.zeros((STORED, STORED), np.uint8) if parsing is None else parsing
    statuses = status if isinstance(status, list) else [status] * len(needed)
    dots, blank = landmark_mask(lm, STORED, STORED), np.zeros((STORED, STORED), np.uint8)
    return dict(clip_id=clip_id, label=label, class_name=f"class{label}", n_frames=n,
                splits=[{"fold": f, "split": s} for f, s in splits],
                test_indices=sampling.test_indices(n, T).tolist(),
                train_candidates=sampling.train_candidates(n, T, k).ravel().tolist(),
                frame_indices=needed.tolist(), jpeg=[jpeg(image(int(i))) for i in needed],
                landmarks=[lm.ravel().tolist()] * len(needed),
                face_maps=[encode_face_map(classes, blank if s == "missing" else dots) for s in statuses],
                face_status=statuses, width=STORED, height=STORED)


def write_rows(path, rows) -> str:
    write_parquet(pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA), path)
    return str(path)


def write_captions(path, clip_ids, hints=None) -> str:
    """An approved-captions file: "caption <id>" for each clip, label hint "none" unless ``hints`` says otherwise."""
    rows = [dict(clip_id=c, caption=f"caption {c}", caption_sha="x", decision="auto_approved",
                 label_hint=(hints or {}).get(c, "none")) for c in clip_ids]
    write_parquet(pa.Table.from_pylist(rows, schema=APPROVED_SCHEMA), path)
    return str(path)

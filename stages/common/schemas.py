"""Arrow schemas of the pipeline's Parquet artefacts, defined once.

Per-clip artefacts hold one row per clip with list columns aligned on ``frame_indices`` (the
distinct source frames kept for that clip, ascending). Sampling plans (``test_indices`` and
``train_candidates``) hold source frame numbers, which are looked up in ``frame_indices``.
"""
from __future__ import annotations

import pyarrow as pa

NUM_LANDMARKS = 68

SPLIT_TYPE = pa.struct([("fold", pa.string()), ("split", pa.string())])

# results/{ds}/index.parquet: one row per usable clip.
INDEX_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),  # e.g. "dfew-00001": never a bare number, so spreadsheets keep it as text
        ("source", pa.string()),  # frame folder or video file
        ("source_kind", pa.string()),  # "frames" | "video"
        ("n_frames", pa.int32()),  # recounted from disk
        ("label", pa.int16()),  # 0-based, dataset's class order
        ("class_name", pa.string()),
        ("splits", pa.list_(SPLIT_TYPE)),  # e.g. [{fold1, test}, {fold2, train}, ...]
    ]
)

# results/{ds}/index_dropped.csv columns (human-readable report of unusable clips).
DROPPED_COLUMNS = ["file", "line", "path", "reason", "clip_id"]

# results/{ds}/frames/{shard}.parquet
FRAMES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("source_kind", pa.string()),
        ("n_frames", pa.int32()),
        ("label", pa.int16()),
        ("test_indices", pa.list_(pa.int32())),  # num_segments source frame numbers (centre of each segment)
        ("train_candidates", pa.list_(pa.int32())),  # num_segments * K, segment-major
        ("frame_indices", pa.list_(pa.int32())),  # distinct decoded source frames, ascending
        ("jpeg", pa.list_(pa.binary())),  # aligned with frame_indices
        # Face crop (frames.face_crop): the square crop of each frame, x0, y0, x1, y1 in source pixels, aligned with
        # frame_indices; null = whole frames (face crop off, or no face in the clip).
        ("crop_boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("crop_status", pa.list_(pa.string())),  # per frame: detected | interpolated | filled (nearest tracked box)
        ("scene_cuts", pa.list_(pa.int32())),  # source frames where a new shot starts (face crop on)
        ("crop_filled_fraction", pa.float32()),  # share of frames filled; null when face crop is off
        ("crop_flag", pa.string()),  # "" | "face_filled" (over face_crop.max_filled_fraction) | "no_face"
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)

# results/{ds}/faces/{shard}.parquet
FACE_STATUS = ("detected", "filled", "missing")
FACES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("frame_indices", pa.list_(pa.int32())),  # same order as the frames shard
        ("landmarks", pa.list_(pa.list_(pa.float32(), NUM_LANDMARKS * 2))),  # x0,y0,x1,y1,... in stored-frame pixels
        ("parsing_png", pa.list_(pa.binary())),  # 8-bit PNG of class ids 0..10 (FaceXFormer order)
        ("det_score", pa.list_(pa.float32())),
        ("face_status", pa.list_(pa.string())),  # one of FACE_STATUS per frame
        ("backend", pa.string()),
        ("clip_flag", pa.string()),  # "" = usable, "no_face" = no frame of the clip had a face
    ]
)

# results/{ds}/captions/raw/{shard}.parquet: one generated description per clip.
CAPTIONS_RAW_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("caption", pa.string()),
        ("backend", pa.string()),  # "landmark-motion" | "video-llava"
        ("model_id", pa.string()),  # checkpoint folder name or describer version
        ("prompt_sha", pa.string()),  # sha256 of the prompt file ("" for backends without a prompt)
        ("label_hint", pa.string()),  # "none" | "paper": whether the prompt was given the clip's label
        ("status", pa.string()),  # "ok" | "empty" | "no_face" | "error: ..."
        # label_hint "paper" only: the same clip captioned with another label ("" when not sampled).
        ("counterfactual_caption", pa.string()),
    ]
)

REMOVED_SPAN_TYPE = pa.struct([("text", pa.string()), ("reason", pa.string())])

# results/{ds}/captions/refined.parquet: refined text, what was removed and why, leakage flags.
REFINED_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("caption_raw", pa.string()),
        ("caption_refined", pa.string()),
        ("removed", pa.list_(REMOVED_SPAN_TYPE)),
        # e.g. "lexicon:smile", "over_77_tokens", "empty", "counterfactual", "face_filled" / "no_face" (face crop)
        ("flags", pa.list_(pa.string())),
        ("leakage_score", pa.float32()),  # 0 = no evidence of label leakage, 1 = strong
        ("n_tokens", pa.int32()),  # CLIP BPE tokens incl. start/end
        ("label_hint", pa.string()),
        ("face_filled_fraction", pa.float32()),  # frames whose face crop was filled (null: face crop off)
    ]
)

# results/{ds}/captions/approved.parquet: the captions downstream stages may use.
APPROVED_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("caption", pa.string()),
        ("caption_sha", pa.string()),  # of the refined caption that was reviewed
        ("decision", pa.string()),  # "approved" | "edited" | "auto_approved" | "unreviewed" (mode off)
        ("label_hint", pa.string()),
    ]
)

# results/{ds}/features/{shard}.parquet: the visual training cache (frames, faces, labels, splits). Captions are not
# in it: models that read captions also read results/{ds}/captions/approved.parquet (APPROVED_SCHEMA), so a caption,
# lexicon or review edit reruns only those models.
FEATURES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("label", pa.int16()),
        ("class_name", pa.string()),
        ("splits", pa.list_(SPLIT_TYPE)),
        ("n_frames", pa.int32()),
        ("test_indices", pa.list_(pa.int32())),
        ("train_candidates", pa.list_(pa.int32())),
        ("frame_indices", pa.list_(pa.int32())),
        ("jpeg", pa.list_(pa.binary())),
        ("landmarks", pa.list_(pa.list_(pa.float32(), NUM_LANDMARKS * 2))),
        # stages.faces.render.encode_face_map per frame, at the stored frame size: parsing class ids in bits 0-6, bit 7
        # on the landmark dots (landmark_mask; none for "missing" frames). The dots are rendered once here instead of
        # every epoch in the trainer's loader, and one buffer per frame holds both maps (one decode).
        ("face_maps", pa.list_(pa.binary())),
        ("face_status", pa.list_(pa.string())),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)

# results/{ds}/{fold}/{model}/predictions.parquet: test-split predictions of the selected epoch.
PREDICTIONS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("label", pa.int16()),
        ("prediction", pa.int16()),
        ("logits", pa.list_(pa.float32())),  # one per class
        ("modality_weights", pa.list_(pa.float32())),  # FineCLIPER Eq. 9 weights in the model's modality order; [] otherwise
    ]
)

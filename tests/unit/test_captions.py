"""Caption stage: landmark-motion descriptions from landmark tracks, and Video-LLaVA through the stage's code path."""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.captions import landmark_motion
from stages.captions.__main__ import main as captions_main
from stages.captions.stage import CaptionsConfig, VideoLlavaConfig, caption_video_llava
from stages.common.errors import StageError
from stages.common.face_detect import detect_faces, landmarks_68
from stages.common.io import write_parquet
from stages.common.schemas import FACES_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA
from stages.refine.lexicon import emotion_hits, load_lexicon
from tests.unit.tiny_video_llava import build_tiny_video_llava

REPO = Path(__file__).resolve().parents[2]
PHRASEBOOK = REPO / "config/prompts/landmark_motion.yaml"
EMOTION_WORDS = {"happy", "happiness", "sad", "sadness", "angry", "anger", "surprise", "surprised", "fear", "afraid",
                 "disgust", "smile", "joy", "emotion", "expression", "neutral", "contempt", "anxious"}


@pytest.fixture(scope="module")
def astronaut_landmarks() -> np.ndarray:
    from skimage.data import astronaut

    image = astronaut()
    return landmarks_68(image, detect_faces(image)[0].box)


@pytest.fixture(scope="module")
def book():
    return landmark_motion.load_phrasebook(PHRASEBOOK)


def track(base: np.ndarray, frames: int, move) -> np.ndarray:
    """A clip whose landmarks go from ``base`` to ``move(base)`` linearly."""
    out = []
    for t in np.linspace(0, 1, frames):
        moved = move(base.copy())
        out.append(base + t * (moved - base))
    return np.stack(out).astype(np.float32)


def raise_brows(points):
    iod = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
    points[17:27, 1] -= 0.2 * iod
    return points


def drop_jaw(points):
    iod = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
    points[5:12, 1] += 0.3 * iod
    points[56:59, 1] += 0.3 * iod
    points[65:68, 1] += 0.3 * iod
    return points


def test_measures_are_scale_free(astronaut_landmarks):
    small = landmark_motion.measure_frames(astronaut_landmarks[None])
    large = landmark_motion.measure_frames(astronaut_landmarks[None] * 3 + 50)
    for name in landmark_motion.MEASURES:
        assert small[name] == pytest.approx(large[name], abs=1e-6), name


def test_raised_brows_are_described_as_rising_brows(astronaut_landmarks, book):
    clip = track(astronaut_landmarks, 12, raise_brows)
    changes = landmark_motion.movement_changes(clip, np.ones(12, bool), book)
    assert changes["brow_height"] > 0.15 and abs(changes["jaw_opening"]) < 0.01
    text = landmark_motion.describe_changes(changes, book).lower()
    assert "brow" in text and any(word in text for word in ("lift", "rise", "arch"))
    assert "jaw" not in text


def test_dropped_jaw_is_described(astronaut_landmarks, book):
    clip = track(astronaut_landmarks, 12, drop_jaw)
    text = landmark_motion.describe_clip("demo-x", clip, np.ones(12, bool), book).lower()
    assert "jaw" in text and ("drop" in text or "open" in text)


def test_still_face_says_so_and_invalid_frames_are_ignored(astronaut_landmarks, book):
    clip = np.repeat(astronaut_landmarks[None], 10, axis=0)
    clip[4] = 0  # a frame with no face (zeros), masked out
    valid = np.ones(10, bool)
    valid[4] = False
    text = landmark_motion.describe_clip("demo-still", clip, valid, book)
    assert text in {landmark_motion._sentence(s) for s in book.still}


def test_wording_varies_with_the_clip_but_is_stable(astronaut_landmarks, book):
    clip = track(astronaut_landmarks, 8, raise_brows)
    valid = np.ones(8, bool)
    texts = {landmark_motion.describe_clip(f"demo-{i}", clip, valid, book) for i in range(6)}
    assert len(texts) > 1
    assert landmark_motion.describe_clip("demo-1", clip, valid, book) == landmark_motion.describe_clip("demo-1", clip, valid, book)


def test_phrasebook_has_no_emotion_words(book):
    lexicon = load_lexicon(REPO / "config/lexicons")
    phrases = [p for m in book.movements for p in (*m.up, *m.down)] + list(book.still)
    for phrase in phrases:
        assert not emotion_hits(phrase, lexicon), phrase
        assert not EMOTION_WORDS & set(phrase.lower().replace(",", " ").split()), phrase


def test_malformed_phrasebook_is_named(tmp_path):
    bad = tmp_path / "book.yaml"
    bad.write_text("movements:\n  smile_width: {threshold: 1, up: [a], down: [b]}\nstill: [x]\nconnectors: [' ']\nmax_clauses: 2\n")
    with pytest.raises(StageError, match="unknown measure 'smile_width'"):
        landmark_motion.load_phrasebook(bad)


def faces_row(clip_id, landmarks, statuses, flag=""):
    return {"clip_id": clip_id, "frame_indices": list(range(len(landmarks))),
            "landmarks": [lm.reshape(-1).tolist() for lm in landmarks], "parsing_png": [b""] * len(landmarks),
            "det_score": [1.0] * len(landmarks), "face_status": statuses, "backend": "dlib", "clip_flag": flag}


def test_cli_writes_one_caption_per_clip_and_no_text_without_faces(tmp_path, astronaut_landmarks):
    moving = track(astronaut_landmarks, 6, drop_jaw)
    rows = [faces_row("demo-a", moving, ["detected"] * 6),
            faces_row("demo-b", np.zeros((3, 68, 2), np.float32), ["missing"] * 3, "no_face")]
    write_parquet(pa.Table.from_pylist(rows, schema=FACES_SCHEMA), tmp_path / "faces.parquet", FACES_SCHEMA)
    captions_main(["--faces", str(tmp_path / "faces.parquet"), "--frames", "unused", "--index", "unused",
                   "--prompt", str(PHRASEBOOK), "--out", str(tmp_path / "raw.parquet")])
    got = {r["clip_id"]: r for r in pq.read_table(tmp_path / "raw.parquet").to_pylist()}
    assert "jaw" in got["demo-a"]["caption"] and got["demo-a"]["status"] == "ok"
    assert got["demo-a"]["backend"] == "landmark-motion" and len(got["demo-a"]["prompt_sha"]) == 16
    assert got["demo-b"]["caption"] == "" and got["demo-b"]["status"] == "no_face"


def test_config_rejects_label_hint_for_the_landmark_backend():
    with pytest.raises(StageError, match="label_hint 'paper' only applies"):
        CaptionsConfig.from_dict({"backend": "landmark-motion", "label_hint": "paper"})
    with pytest.raises(StageError, match="unknown keys"):
        CaptionsConfig.from_dict({"backend": "landmark-motion", "temperature": 0.2})


def test_video_llava_captions_through_the_stage(tmp_path):
    """Tiny random-weight Video-LLaVA, real frame folders: the same code path as a real checkpoint."""
    import cv2

    model_dir = build_tiny_video_llava(tmp_path / "tiny-llava")
    clips = []
    for k, n in enumerate((5, 20)):
        folder = tmp_path / f"clip{k}"
        folder.mkdir()
        for i in range(n):
            cv2.imwrite(str(folder / f"{i + 1:06d}.jpg"), np.full((24, 24, 3), 10 * i, np.uint8))
        clips.append({"clip_id": f"demo-{k}", "source": str(folder), "source_kind": "frames", "n_frames": n,
                      "label": k, "test_indices": [], "train_candidates": [], "frame_indices": [], "jpeg": [],
                      "crop_box": None, "width": 24, "height": 24})
    frames = pa.Table.from_pylist(clips, schema=FRAMES_SCHEMA)
    index = pa.Table.from_pylist(
        [{"clip_id": c["clip_id"], "source": c["source"], "source_kind": "frames", "n_frames": c["n_frames"],
          "label": c["label"], "class_name": name, "splits": []} for c, name in zip(clips, ["happiness", "sadness"])],
        schema=INDEX_SCHEMA)
    config = CaptionsConfig(backend="video-llava", label_hint="paper", counterfactual_fraction=1.0,
                            video_llava=VideoLlavaConfig(model_dir=str(model_dir), max_new_tokens=4, batch_size=2))
    rows = caption_video_llava(frames, index, str(REPO / "config/prompts/fineclip_paper.txt"), config, progress=False)
    assert [r["clip_id"] for r in rows] == ["demo-0", "demo-1"]
    assert all(r["backend"] == "video-llava" and r["label_hint"] == "paper" for r in rows)
    assert all(r["status"] in ("ok", "empty") for r in rows)
    again = caption_video_llava(frames, index, str(REPO / "config/prompts/fineclip_paper.txt"), config, progress=False)
    assert [r["caption"] for r in again] == [r["caption"] for r in rows]  # greedy decoding is deterministic

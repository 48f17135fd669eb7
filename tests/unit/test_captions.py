"""Caption stage: landmark-motion descriptions from landmark tracks, and Video-LLaVA through the stage's code path."""
import dataclasses
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
    text = landmark_motion.describe_clip("demo-x", clip, np.ones(12, bool), book).lower()
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
    assert "no clear" in text.lower()  # says plainly that nothing clear moved


def iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def still_photo_clip(base: np.ndarray, frames: int, rng: np.random.Generator, jitter: float = 0.02) -> np.ndarray:
    """Landmarks of a still face photographed with a slow zoom, pan and slight rotation, plus per-point detector
    jitter of ``jitter`` inter-ocular distances (dlib's, on real photos, is 0.3-0.64 of the movement thresholds)."""
    centre = base.mean(0)
    zoom, pan, turn = 1 + rng.uniform(-0.08, 0.08, 2), rng.uniform(-0.05, 0.05, (2, 2)) * iod(base) * 3, rng.uniform(-1, 1, 2)
    out = []
    for s in np.linspace(0, 1, frames):
        angle = np.radians(turn[0] + s * (turn[1] - turn[0]))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        z, p = zoom[0] + s * (zoom[1] - zoom[0]), pan[0] + s * (pan[1] - pan[0])
        moved = (base - centre) @ rot.T * z + centre + p
        out.append(moved + rng.normal(0, jitter * iod(base) * z, base.shape))
    return np.stack(out).astype(np.float32)


def test_zoom_pan_and_jitter_of_a_still_photo_are_not_movement(astronaut_landmarks, book):
    """40 still clips with random zoom, pan, rotation and detector-sized jitter: under 5 % get a movement word."""
    rng = np.random.default_rng(0)
    still = {landmark_motion._sentence(s) for s in book.still}
    texts = [landmark_motion.describe_clip(f"still-{k}", still_photo_clip(astronaut_landmarks, 16, rng), np.ones(16, bool),
                                           book) for k in range(40)]
    moved = [t for t in texts if t not in still]
    assert len(moved) / len(texts) < 0.05, moved


def test_a_one_frame_twitch_is_not_a_movement(astronaut_landmarks, book):
    clip = np.repeat(astronaut_landmarks[None], 14, axis=0).astype(np.float32)
    clip[7] = raise_brows(astronaut_landmarks.copy())  # one frame: a detector glitch, not a movement
    text = landmark_motion.describe_clip("demo-twitch", clip, np.ones(14, bool), book)
    assert text in {landmark_motion._sentence(s) for s in book.still}, text


def test_a_real_movement_is_described_through_jitter_zoom_and_pan(astronaut_landmarks, book):
    rng = np.random.default_rng(1)
    still = still_photo_clip(astronaut_landmarks, 16, rng)
    raised = still + track(astronaut_landmarks, 16, raise_brows) - astronaut_landmarks  # brows rise during the zoom
    text = landmark_motion.describe_clip("demo-brows", raised, np.ones(16, bool), book).lower()
    assert "brow" in text and any(word in text for word in ("lift", "rise", "arch")), text
    assert "jaw" not in text and "lips" not in text, text


def test_noise_floor_is_the_clips_landmark_jitter(astronaut_landmarks, book):
    rng = np.random.default_rng(0)
    drift = np.linspace(0, 30, 16)[:, None, None] + astronaut_landmarks  # a smooth pan: no jitter
    noisy = drift + rng.normal(0, 2.0, drift.shape)
    assert landmark_motion.point_jitter(drift) < 1e-6
    assert 1.8 < landmark_motion.point_jitter(noisy) < 2.2
    gains = landmark_motion.measure_gains(astronaut_landmarks)
    assert all(g > 0 for g in gains.values())
    # the bar of a noisy clip rises above the threshold, by noise_k times the measure's jitter response
    motion = landmark_motion.analyse(noisy, np.ones(16, bool), book)
    assert motion["brow_gap"].bar > book.movements[2].threshold


def zoomed_photo_clip(image: np.ndarray, frames: int, zoom: tuple[float, float], pan: tuple[float, float],
                      seed: int = 0) -> list[np.ndarray]:
    """A still photo made into a clip: a slow zoom and pan (bilinear resampling) plus a little sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    out = []
    for s in np.linspace(0, 1, frames):
        z = zoom[0] + s * (zoom[1] - zoom[0])
        m = np.array([[z, 0, (1 - z) * w / 2 + s * pan[0] * w], [0, z, (1 - z) * h / 2 + s * pan[1] * h]])
        frame = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.append(np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8))
    return out


def detected_tracks(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """dlib landmarks of every frame, as the faces stage finds them (detector box, then shape predictor)."""
    points, valid = [], []
    for frame in frames:
        faces = detect_faces(frame)
        points.append(landmarks_68(frame, faces[0].box) if faces else np.zeros((68, 2), np.float32))
        valid.append(bool(faces))
    return np.stack(points), np.array(valid)


OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def real_photos() -> list:
    from skimage.data import astronaut

    photos = [pytest.param(lambda: astronaut()[:320, 80:400], id="skimage-astronaut")]
    marks = [] if (OPENCV_DATA / "messi5.jpg").is_file() else [
        pytest.mark.skip(reason="OpenCV sample data missing: apt-get install opencv-doc")]

    def messi():
        import cv2

        return cv2.cvtColor(cv2.imread(str(OPENCV_DATA / "messi5.jpg")), cv2.COLOR_BGR2RGB)[:, 150:450]

    photos.append(pytest.param(messi, id="opencv-messi5", marks=marks))
    return photos


@pytest.mark.parametrize("photo", real_photos())
@pytest.mark.parametrize("zoom,pan", [((1.0, 1.08), (0.02, -0.02)), ((1.06, 0.98), (-0.03, 0.0))])
def test_a_zoomed_and_panned_real_still_photo_has_no_movement_words(photo, zoom, pan, book):
    """Real pixels: dlib on a resampled still photo jitters and drifts; the caption must still say nothing moved."""
    points, valid = detected_tracks(zoomed_photo_clip(photo(), 12, zoom, pan))
    assert valid.sum() >= 10
    text = landmark_motion.describe_clip("photo", points, valid, book)
    assert text in {landmark_motion._sentence(s) for s in book.still}, text


def test_interpretive_asides_name_emotions_and_refinement_removes_them(astronaut_landmarks, book):
    """Strong movements get an MLLM-like aside ("which looks like a smile"); refinement strips exactly that."""
    from stages.refine.refine import refine

    lexicon = load_lexicon(REPO / "config/lexicons")
    assert book.interpretations
    for item in book.interpretations:
        for phrase in item.phrases:
            assert emotion_hits(phrase, lexicon), phrase
    clip = track(astronaut_landmarks, 12, raise_brows)
    motion = landmark_motion.analyse(clip, np.ones(12, bool), book)
    with_aside = landmark_motion.describe_motion(motion, book, variant=0)
    plain = landmark_motion.describe_motion(motion, dataclasses.replace(book, interpretations=()), variant=0)
    assert with_aside != plain and emotion_hits(with_aside, lexicon)
    refined = refine(with_aside, lexicon)
    assert refined.text == plain and refined.removed and not emotion_hits(refined.text, lexicon)


def test_alignment_removes_zoom_pan_and_rotation(astronaut_landmarks):
    angle = np.radians(5)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    frames = np.stack([astronaut_landmarks, astronaut_landmarks @ rot.T * 1.2 + 15]).astype(np.float64)
    aligned = landmark_motion.align_to_reference(frames, 1)
    assert np.abs(aligned[1] - astronaut_landmarks).max() < 1e-3


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
                      "crop_boxes": None, "width": 24, "height": 24})
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

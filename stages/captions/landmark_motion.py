"""The offline caption backend: describe how facial parts move, measured from the 68-landmark tracks.

Each clip's landmarks give per-frame measures (brow height, eye opening, mouth-corner height, lip gap, jaw
opening, head roll/yaw, ...), normalised by the inter-ocular distance so that face size does not matter.
Detector jitter must not read as movement, so a clip is read robustly (settings under ``analysis`` in the
phrasebook, config/prompts/landmark_motion.yaml):

1. valid frames are aligned by a similarity transform (fit on rigid points) to the mean of the first window, so
   zooming, panning or rotating the whole face is not a facial movement (head roll/yaw are read unaligned);
2. each measure's track is smoothed over time (median 3, then Savitzky-Golay); the clip's noise floor of a
   measure is its landmark jitter (robust spread of the frame-to-frame residual, pooled over all points) times
   how strongly that measure responds to jitter on its points;
3. the baseline is the mean of the first window, the peak the later window (a mean too, never one frame) that
   moves farthest from it;
4. a movement is described only when its change exceeds max(threshold, noise_k * noise floor) and stays past that
   bar for ``persist_frames`` consecutive frames; when none does, a ``still`` sentence says so plainly.

The movement wording describes actions only. Optional ``interpretations`` add an aside to strong movements, as an
MLLM does ("which looks like a smile"); those asides name emotions on purpose, and the refine stage removes them.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from stages.common.errors import StageError

BACKEND_NAME = "landmark-motion"
MODEL_ID = "landmark-motion-v2"  # bump when the measures change meaning

# iBUG 300-W 68-point groups.
JAW, CHIN = slice(0, 17), 8
BROW_R, BROW_L = slice(17, 22), slice(22, 27)
INNER_BROW_R, INNER_BROW_L = 21, 22
NOSE_TIP = 33
EYE_R, EYE_L = slice(36, 42), slice(42, 48)
MOUTH_R, MOUTH_L = 48, 54
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 51, 57
INNER_UPPER, INNER_LOWER = 62, 66
# Points that expressions barely move (upper jaw line, nose bridge, eye corners): the similarity fit uses these.
RIGID = [0, 1, 15, 16, 27, 28, 36, 39, 42, 45]


def _centre(points: np.ndarray, part: slice) -> np.ndarray:
    return points[:, part].mean(axis=1)


MEASURES = ("brow_height", "inner_brow_height", "brow_gap", "eye_opening", "corner_height", "mouth_width",
            "lip_gap", "upper_lip_height", "jaw_opening", "head_roll", "head_yaw")
HEAD_MEASURES = ("head_roll", "head_yaw")


def measure_frames(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame geometric measures of (T, 68, 2) landmarks, in units of the inter-ocular distance.

    Image y grows downwards, so every "height" here is signed such that larger means higher on the face.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_r, eye_l = _centre(pts, EYE_R), _centre(pts, EYE_L)
    iod = np.linalg.norm(eye_l - eye_r, axis=1)
    iod = np.where(iod > 1e-6, iod, 1.0)
    eye_y = (eye_r[:, 1] + eye_l[:, 1]) / 2
    mouth_mid_y = (pts[:, UPPER_LIP_TOP, 1] + pts[:, LOWER_LIP_BOTTOM, 1]) / 2

    def eye_opening(part: slice) -> np.ndarray:
        p = pts[:, part]  # points 1,2 upper lid; 5,4 lower lid
        return (np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)) / 2

    roll = np.degrees(np.arctan2(eye_l[:, 1] - eye_r[:, 1], eye_l[:, 0] - eye_r[:, 0]))
    jaw_left, jaw_right = pts[:, 0, 0], pts[:, 16, 0]
    yaw = (pts[:, NOSE_TIP, 0] - (jaw_left + jaw_right) / 2) / np.maximum(jaw_right - jaw_left, 1e-6)
    return {
        "brow_height": (eye_y - (_centre(pts, BROW_R)[:, 1] + _centre(pts, BROW_L)[:, 1]) / 2) / iod,
        "inner_brow_height": (eye_y - (pts[:, INNER_BROW_R, 1] + pts[:, INNER_BROW_L, 1]) / 2) / iod,
        "brow_gap": np.linalg.norm(pts[:, INNER_BROW_L] - pts[:, INNER_BROW_R], axis=1) / iod,
        "eye_opening": (eye_opening(EYE_R) + eye_opening(EYE_L)) / 2 / iod,
        "corner_height": (mouth_mid_y - (pts[:, MOUTH_R, 1] + pts[:, MOUTH_L, 1]) / 2) / iod,
        "mouth_width": np.linalg.norm(pts[:, MOUTH_L] - pts[:, MOUTH_R], axis=1) / iod,
        "lip_gap": np.linalg.norm(pts[:, INNER_LOWER] - pts[:, INNER_UPPER], axis=1) / iod,
        "upper_lip_height": (pts[:, NOSE_TIP, 1] - pts[:, UPPER_LIP_TOP, 1]) / iod,
        "jaw_opening": np.linalg.norm(pts[:, CHIN] - pts[:, NOSE_TIP], axis=1) / iod,
        "head_roll": roll,
        "head_yaw": yaw,
    }


@dataclass(frozen=True)
class Movement:
    measure: str
    threshold: float  # change from onset to peak window that counts as visible movement
    up: tuple[str, ...]
    down: tuple[str, ...]


@dataclass(frozen=True)
class Analysis:
    """How tracks are read: smoothing, onset/peak windows, persistence and the noise-floor factor."""

    smooth_frames: int  # Savitzky-Golay window over valid frames (odd; shorter clips use what they have)
    window_frames: int  # baseline = mean of the first window, peak = the mean of one later window
    persist_frames: int  # a movement must stay past its bar for this many consecutive frames
    noise_k: float  # a movement must exceed max(threshold, noise_k * the clip's noise floor of that measure)


@dataclass(frozen=True)
class Interpretation:
    """An interpretive aside added to a strong movement, as an MLLM writes one; refinement must remove it."""

    measure: str
    direction: str  # "up" | "down"
    strength: float  # at least this many times the movement's bar
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Phrasebook:
    """The describer's wording and reading of tracks, from ``config/prompts/landmark_motion.yaml``."""

    movements: tuple[Movement, ...]
    analysis: Analysis
    still: tuple[str, ...]
    connectors: tuple[str, ...]
    max_clauses: int
    interpretations: tuple[Interpretation, ...] = ()


def _interpretations(raw: list, path) -> tuple[Interpretation, ...]:
    out = []
    for spec in raw or []:
        if spec["measure"] not in MEASURES or spec["direction"] not in ("up", "down"):
            raise StageError(f"{path}: interpretation {spec!r} needs a known measure and direction up or down.")
        out.append(Interpretation(spec["measure"], spec["direction"], float(spec["strength"]), tuple(spec["phrases"])))
    return tuple(out)


def load_phrasebook(path: str | Path) -> Phrasebook:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        known = set(MEASURES)
        movements = []
        for measure, spec in raw["movements"].items():
            if measure not in known:
                raise StageError(f"{path}: unknown measure '{measure}'; known measures are {sorted(known)}.")
            movements.append(Movement(measure, float(spec["threshold"]), tuple(spec["up"]), tuple(spec["down"])))
        spec = raw["analysis"]
        analysis = Analysis(int(spec["smooth_frames"]), int(spec["window_frames"]), int(spec["persist_frames"]),
                            float(spec["noise_k"]))
        if min(analysis.smooth_frames, analysis.window_frames, analysis.persist_frames) < 1 or analysis.noise_k < 0:
            raise StageError(f"{path}: analysis frame counts must be >= 1 and noise_k >= 0, got {spec}.")
        return Phrasebook(tuple(movements), analysis, tuple(raw["still"]), tuple(raw["connectors"]),
                          int(raw["max_clauses"]), _interpretations(raw.get("interpretations"), path))
    except FileNotFoundError as err:
        raise StageError(f"{path}: phrasebook of the landmark-motion captioner not found (captions.prompt).") from err
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        raise StageError(f"{path}: malformed phrasebook ({err!r}); compare with config/prompts/landmark_motion.yaml.") from err


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and translation mapping ``src`` points onto ``dst`` in the least-squares sense (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (s ** 2).sum()
    scale = float((sig * np.diag(sign)).sum() / var) if var > 1e-12 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def align_to_reference(points: np.ndarray, window: int) -> np.ndarray:
    """(T, 68, 2) landmarks mapped by a similarity transform (fit on rigid points) onto the first window's mean.

    Zooming, panning or rotating the whole face then changes nothing; what moves relative to eyes, nose bridge and
    upper jaw remains.
    """
    reference = points[:window].mean(0)
    out = np.empty_like(points)
    for t, frame in enumerate(points):
        scale, rot, shift = _similarity(frame[RIGID], reference[RIGID])
        out[t] = scale * frame @ rot.T + shift
    return out


def smooth(series: np.ndarray, frames: int) -> np.ndarray:
    """Median (3) then Savitzky-Golay (order 2) filter along time; clips too short for a filter are kept as is."""
    from scipy.signal import medfilt, savgol_filter

    out = medfilt(series, 3) if len(series) >= 3 else series.copy()
    window = min(frames, len(series) - (len(series) + 1) % 2)  # odd and no longer than the series
    return savgol_filter(out, window, 2, mode="interp") if window > 2 else out


def point_jitter(points: np.ndarray) -> float:
    """The clip's frame-to-frame landmark jitter (pixels): robust spread (1.4826 * MAD), pooled over all points and
    both axes, of what is left after the smoothest local fit, the straight line through each frame's two neighbours
    (second difference / sqrt(6): the jitter's standard deviation for independent per-frame noise, ~0 for smooth
    movement). Pooling 136 coordinates makes it stable even on short clips."""
    if len(points) < 3:
        return 0.0
    residual = ((points[:-2] - 2 * points[1:-1] + points[2:]) / np.sqrt(6)).ravel()
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def measure_gains(shape: np.ndarray, step: float = 1e-3) -> dict[str, float]:
    """How much each measure moves per pixel of independent jitter on every point: the norm of its gradient with
    respect to the 136 coordinates at ``shape`` (finite differences). Jitter x gain is the measure's noise floor."""
    shape = np.asarray(shape, dtype=np.float64)
    nudged = np.repeat(shape[None], shape.size + 1, axis=0)
    nudged[1:].reshape(shape.size, -1)[np.arange(shape.size), np.arange(shape.size)] += step
    values = measure_frames(nudged)
    return {name: float(np.linalg.norm((v[1:] - v[0]) / step)) for name, v in values.items()}


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


@dataclass(frozen=True)
class Motion:
    change: float  # mean of the peak window minus mean of the first window
    bar: float  # max(threshold, noise_k * noise floor): what a change must exceed
    persists: bool  # stayed past the bar, in the direction of the change, for persist_frames frames

    @property
    def visible(self) -> bool:
        return self.persists and abs(self.change) >= self.bar


def analyse(landmarks: np.ndarray, valid: np.ndarray, book: Phrasebook) -> dict[str, Motion]:
    """Per-measure motion of a clip from its valid frames: aligned, smoothed, windowed and checked against noise."""
    pts = np.asarray(landmarks, dtype=np.float64)[np.asarray(valid, dtype=bool)]
    if len(pts) < 2:
        return {m.measure: Motion(0.0, m.threshold, False) for m in book.movements}
    spec = book.analysis
    window = min(spec.window_frames, max(1, len(pts) // 3))
    aligned_points = align_to_reference(pts, window)
    aligned = measure_frames(aligned_points)
    head = measure_frames(pts)  # head pose is the movement the alignment removes: read it from the frame itself
    series = {m.measure: (head if m.measure in HEAD_MEASURES else aligned)[m.measure] for m in book.movements}
    smoothed = {name: smooth(values, spec.smooth_frames) for name, values in series.items()}
    jitter, gains = point_jitter(aligned_points), measure_gains(aligned_points[:window].mean(0))
    bars = {m.measure: max(m.threshold, spec.noise_k * jitter * gains[m.measure]) for m in book.movements}
    kernel = np.ones(window) / window
    baseline = {name: values[:window].mean() for name, values in smoothed.items()}
    means = {name: np.convolve(values, kernel, mode="valid") for name, values in smoothed.items()}
    scaled = np.stack([(means[name] - baseline[name]) / bars[name] for name in smoothed], axis=1)
    peak = int(np.argmax(np.linalg.norm(scaled, axis=1)))
    persist = min(spec.persist_frames, len(pts) - window)
    out = {}
    for m in book.movements:
        change = float(means[m.measure][peak] - baseline[m.measure])
        past = np.sign(change) * (smoothed[m.measure] - baseline[m.measure]) >= bars[m.measure]
        out[m.measure] = Motion(change, bars[m.measure], persist >= 1 and _longest_run(past) >= persist)
    return out


def movement_changes(landmarks: np.ndarray, valid: np.ndarray, book: Phrasebook) -> dict[str, float]:
    """Change of every measure from the first window to the peak window (0 for clips with under two valid frames)."""
    return {name: motion.change for name, motion in analyse(landmarks, valid, book).items()}


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _aside(movement: Movement, motion: Motion, book: Phrasebook, variant: int) -> str:
    direction = "up" if motion.change > 0 else "down"
    for item in book.interpretations:
        if item.measure == movement.measure and item.direction == direction and abs(motion.change) >= item.strength * motion.bar:
            return item.phrases[variant % len(item.phrases)]
    return ""


def describe_motion(motion: dict[str, Motion], book: Phrasebook, variant: int = 0) -> str:
    """Concise description of the visible movements, strongest first; ``variant`` picks among phrasings.

    When nothing moves clearly, one of the phrasebook's ``still`` sentences says so.
    """
    visible = sorted(
        ((abs(motion[m.measure].change) / motion[m.measure].bar, i, m) for i, m in enumerate(book.movements)
         if motion[m.measure].visible),
        reverse=True,
    )
    clauses, asides = [], []
    for rank, (_, _, movement) in enumerate(visible[: book.max_clauses]):
        options = movement.up if motion[movement.measure].change > 0 else movement.down
        clauses.append(options[(variant + rank) % len(options)])
        asides.append(_aside(movement, motion[movement.measure], book, variant + rank))
    if not clauses:
        return _sentence(book.still[variant % len(book.still)])
    sentences = []
    for start in range(0, len(clauses), 2):
        connector = book.connectors[(variant + start) % len(book.connectors)]
        aside = next((a for a in asides[start:start + 2] if a), "")  # at the end of its sentence, after a comma
        sentences.append(_sentence(connector.join(clauses[start:start + 2]) + (", " + aside if aside else "")))
    return " ".join(sentences)


def describe_clip(clip_id: str, landmarks: np.ndarray, valid: np.ndarray, book: Phrasebook) -> str:
    """Caption of one clip; the phrasing variant is derived from the clip id, so reruns are identical."""
    return describe_motion(analyse(landmarks, valid, book), book, variant=zlib.crc32(clip_id.encode()))

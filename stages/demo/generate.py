"""Clip synthesis and writing: random timing, head motion and lighting around an expression pattern."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from stages.common.errors import StageError
from stages.demo.expressions import CLASSES, PATTERNS, displacement, identity_displacement, rest_displacement
from stages.demo.face_model import SourceFace, face_axes, face_center, face_size, load_source
from stages.demo.warp import Warper, build_warper, render

ROOT_PREFIX = "/DEMO_ROOT"  # the index stage rewrites this prefix to the real root, like DFER-CLIP's lists
FACE_FRACTION = 0.53  # jaw width / frame side: ~100 px faces at 192 px, so dlib still finds them when shrunk
IDLE_GROUPS = [range(0, 17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)]


@dataclass(frozen=True)
class Config:
    seed: int = 0
    clips_per_class: int = 20
    min_frames: int = 12
    max_frames: int = 48
    size: int = 192
    fps: int = 25
    frame_folder_fraction: float = 0.3
    test_fraction: float = 0.25
    occluded_clips: int = 6  # something passes in front of the face: the face tracker flags these for review
    # Label name -> expression pattern, in label order. Another dataset renames, drops or reorders classes here.
    classes: dict = field(default_factory=lambda: {c: c for c in CLASSES})
    identity: float = 0.0  # how far the face shape moves towards another person's (0: the photo's own face)
    max_roll: float = 6.0  # head roll, degrees either way
    max_brightness: float = 25.0  # lighting offset, grey levels either way


def _type_ok(value, declared: str) -> bool:
    if declared == "dict":
        return isinstance(value, dict)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if declared == "float" else isinstance(value, int)


def parse_config(raw: dict) -> Config:
    """Defaults for missing keys; a clear error for unknown keys, wrong types and impossible values."""
    if not isinstance(raw, dict):
        raise StageError(f"demo config must be a JSON object, got {type(raw).__name__}")
    known = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise StageError(f"demo config: unknown keys {unknown}; known keys are {sorted(known)}")
    for key, value in raw.items():
        if not _type_ok(value, known[key]):
            raise StageError(f"demo config: {key} must be a {known[key]}, got {value!r}")
    cfg = Config(**raw)
    problems = [
        (cfg.clips_per_class < 1, "clips_per_class must be >= 1"),
        (not 1 <= cfg.min_frames <= cfg.max_frames, "need 1 <= min_frames <= max_frames"),
        (cfg.size < 64 or cfg.size % 2, "size must be an even number >= 64 (H.264 needs even sides)"),
        (cfg.fps < 1, "fps must be >= 1"),
        (not 0 <= cfg.frame_folder_fraction <= 1, "frame_folder_fraction must be in [0, 1]"),
        (not 0 < cfg.test_fraction < 1, "test_fraction must be in (0, 1)"),
        (not cfg.classes, "classes must name at least one class"),
        (any(not (isinstance(n, str) and n.isidentifier()) for n in cfg.classes),
         "class names must be identifiers (they name the clip files)"),
        (any(p not in PATTERNS for p in cfg.classes.values()), f"classes must map to patterns of {sorted(PATTERNS)}"),
        (not 0 <= cfg.max_roll <= 45, "max_roll must be in [0, 45] degrees"),
        (not 0 <= cfg.max_brightness <= 100, "max_brightness must be in [0, 100]"),
        (not 0 <= cfg.occluded_clips <= cfg.clips_per_class * len(cfg.classes),
         "occluded_clips must be in [0, clips]"),
    ]
    for bad, message in problems:
        if bad:
            raise StageError(f"demo config: {message} (got {asdict(cfg)})")
    return cfg


@dataclass(frozen=True)
class ClipSpec:
    name: str
    label: int
    expression: str  # the pattern of stages/demo/expressions.py that the clip's face makes
    n_frames: int
    as_frames: bool  # a folder of JPEGs instead of an mp4, so that both source kinds reach the index stage
    seed: tuple[int, ...]
    max_roll: float = 6.0
    max_brightness: float = 25.0
    occluded: bool = False

    @property
    def rel_path(self) -> str:
        return f"clips/{self.name}" if self.as_frames else f"clips/{self.name}.mp4"


def plan_clips(cfg: Config) -> list[ClipSpec]:
    """Names, labels, lengths and source kinds; each clip gets its own seed so clips do not depend on each other."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_folders = round(cfg.frame_folder_fraction * cfg.clips_per_class)
    specs = []
    for label, (cls, expression) in enumerate(cfg.classes.items()):
        folders = set(rng.permutation(cfg.clips_per_class)[:n_folders].tolist())
        for i in range(cfg.clips_per_class):
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            specs.append(ClipSpec(f"{cls}_{i:03d}", label, expression, n, i in folders, (cfg.seed, label, i),
                                  cfg.max_roll, cfg.max_brightness))
    # Drawn from a stream of their own, so that the other clips stay as they were without occluded ones.
    occluded = set(np.random.default_rng([cfg.seed, 1]).permutation(len(specs))[:cfg.occluded_clips].tolist())
    return [replace(s, occluded=True) if k in occluded else s for k, s in enumerate(specs)]


@dataclass(frozen=True)
class Scene:
    """Everything shared by all clips: the rescaled photo, its spline weights and its rest pose."""

    source: SourceFace
    warper: Warper
    rest: np.ndarray  # (68, 2) displacement that relaxes the photo's smile
    size: int


def build_scene(size: int, identity: float = 0.0) -> Scene:
    """``identity`` reshapes the face for every clip alike: the same photo then stands for another person."""
    source = load_source(FACE_FRACTION * size)
    warper = build_warper(source.landmarks, source.image.shape[:2])
    rest = rest_displacement(source.landmarks) + identity_displacement(source.landmarks, identity)
    return Scene(source, warper, rest, size)


def pose_matrix(scene: Scene, angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2x3 map from photo to frame: the face centre goes to the frame centre, then roll, scale, shift."""
    a = np.deg2rad(angle_deg)
    linear = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
    center = face_center(scene.source.landmarks)
    offset = np.array([scene.size / 2 + shift[0], scene.size / 2 + shift[1]]) - linear @ center
    return np.concatenate([linear, offset[:, None]], axis=1).astype(np.float32)


def _paint_mouth(frame: np.ndarray, pts: np.ndarray, opening: float) -> np.ndarray:
    """Darken the inside of an opened mouth: warping alone would only stretch the lips and teeth.

    ``opening`` is how far the lower lip dropped below its rest position, in face units; the top 30 % of
    the gap stays unpainted so the upper teeth still show.
    """
    alpha = float(np.clip((opening - 0.01) / 0.04, 0.0, 1.0)) * 0.9
    if alpha <= 0:
        return frame
    poly = pts[60:68].copy()
    poly[1:4] += 0.3 * (pts[[67, 66, 65]] - pts[61:64])
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (3, 3), 0)[..., None] * alpha
    return (frame * (1 - mask) + mask * np.array([45.0, 18.0, 22.0])).astype(np.uint8)


def render_face(scene: Scene, disp: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame and its 68 landmarks (frame pixels) for a landmark displacement ``disp`` on top of the rest pose."""
    src = scene.source
    total = scene.rest + disp
    frame = render(src.image, scene.warper, total, pose, scene.size)
    pts = (src.landmarks + total) @ pose[:, :2].T + pose[:, 2]
    _, down = face_axes(src.landmarks)
    opening = float(disp[66] @ down) / face_size(src.landmarks)
    return _paint_mouth(frame, pts, opening), pts.astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def intensity_curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """Neutral -> apex with a random onset and ramp, a hold, then an optional partial release."""
    t = np.arange(n, dtype=np.float64)
    onset = rng.uniform(0.0, 0.35) * n
    apex = min(onset + rng.uniform(0.15, 0.4) * n, 0.85 * (n - 1))
    hold_end = apex + rng.uniform(0.1, 0.5) * n
    release = rng.uniform(0.0, 0.6)  # fraction of the expression that fades again before the clip ends
    rise = _smoothstep((t - onset) / max(apex - onset, 1.0))
    fall = _smoothstep((t - hold_end) / max(n - 1 - hold_end, 1.0)) if hold_end < n - 1 else np.zeros(n)
    return rise * (1 - release * fall)


def idle_motion(rng: np.random.Generator, n: int, unit: float) -> np.ndarray:
    """(n, 68, 2) slow, small wobble of each feature group, so that no clip (neutral included) is a still."""
    out = np.zeros((n, 68, 2), np.float32)
    t = np.arange(n)[:, None]
    for group in IDLE_GROUPS:
        amp = rng.uniform(-0.006, 0.006, size=2) * unit
        freq, phase = rng.uniform(0.03, 0.12), rng.uniform(0, 2 * np.pi)
        out[:, list(group)] = (amp * np.sin(2 * np.pi * freq * t + phase))[:, None, :]
    return out


def synthesize_clip(scene: Scene, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 RGB frames and (n, 68, 2) landmarks of one clip, fully determined by ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    n, size, lm = spec.n_frames, scene.size, scene.source.landmarks
    apex_disp = displacement(spec.expression, lm, rng.uniform(0.6, 1.0))
    curve = intensity_curve(rng, n)
    idle = idle_motion(rng, n, face_size(lm))
    # Head pose and lighting drift smoothly from a random start to a random end.
    angle, scale = rng.uniform(-spec.max_roll, spec.max_roll, 2), rng.uniform(0.93, 1.07, 2)
    shift = rng.uniform(-0.04, 0.04, (2, 2)) * size
    flip = bool(rng.random() < 0.5)
    contrast, brightness = rng.uniform(0.8, 1.2, 2), rng.uniform(-spec.max_brightness, spec.max_brightness, 2)
    gains = rng.uniform(0.93, 1.07, 3)
    noise_amp = int(rng.integers(2, 8))
    frames = np.empty((n, size, size, 3), np.uint8)
    points = np.empty((n, 68, 2), np.float32)
    for i, s in enumerate(_smoothstep(np.linspace(0, 1, n))):
        lerp = lambda pair: pair[0] + s * (pair[1] - pair[0])  # noqa: E731
        pose = pose_matrix(scene, lerp(angle), lerp(scale), lerp(shift), flip)
        frame, points[i] = render_face(scene, curve[i] * apex_disp + idle[i], pose)
        frames[i] = relight(frame, lerp(contrast) * gains, lerp(brightness), noise_amp, rng)
    if spec.occluded:
        occlude(frames, rng)
    return frames, points


def occlude(frames: np.ndarray, rng: np.random.Generator) -> None:
    """Something dark passes in front of the camera and stays, hiding the face in the last 70-85 % of the frames
    (well over half of the sampled frames too, which are denser early in clips longer than 32 frames).

    In-the-wild clips have such frames; the frames stage then finds no face in most of the clip, crops the last
    tracked box and flags the clip (``face_filled``), so that a person reviews its caption.
    """
    n, size = len(frames), frames.shape[1]
    start = min(n - 1, int(round(n * rng.uniform(0.15, 0.3))))
    colour = rng.uniform(20, 70, 3)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (size // 2, size // 2), (int(0.48 * size), int(0.52 * size)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * size)[..., None]
    frames[start:] = (frames[start:] * (1 - mask) + mask * colour).astype(np.uint8)


def relight(frame: np.ndarray, contrast: np.ndarray, brightness: float, noise_amp: int, rng: np.random.Generator
            ) -> np.ndarray:
    """Per-channel contrast around mid-grey, a brightness offset, then uniform noise of +-``noise_amp``."""
    lut = (np.arange(256)[:, None] - 128.0) * contrast + 128 + brightness
    lit = cv2.LUT(frame, np.clip(lut, 0, 255).astype(np.uint8)[:, None, :])
    # Uniform integer noise: a fraction of the cost of Gaussian floats, and just as good at hiding the warp.
    noise = rng.integers(-noise_amp, noise_amp + 1, lit.shape, dtype=np.int16)
    return cv2.add(lit, noise, dtype=cv2.CV_8U)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 mp4 through PyAV (the decoder the frames stage uses).

    With x264's default lookahead and macroblock-tree rate control, about one encode in ten came out
    different for the same frames (PyAV 18 wheels); ``ultrafast`` has neither, and one thread rules out
    thread timing, so equal frames give equal files.
    """
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast", "threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def decoded_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def write_frame_folder(folder: Path, frames: np.ndarray) -> None:
    """000001.jpg, 000002.jpg, ...: zero-padded and 1-based, so a lexicographic sort is the time order."""
    folder.mkdir()
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def split_lists(specs: list[ClipSpec], cfg: Config, split: int) -> dict[str, list[str]]:
    """Stratified train/test lines in DFER-CLIP's format (`path num_frames label`); each split its own shuffle."""
    rng = np.random.default_rng([cfg.seed, 100 + split])
    test = set()
    for label in range(len(cfg.classes)):
        names = [s.name for s in specs if s.label == label]
        n_test = min(max(round(cfg.test_fraction * len(names)), 1), len(names) - 1) if len(names) > 1 else 0
        test.update(names[j] for j in rng.permutation(len(names))[:n_test])
    lines = {"train": [], "test": []}
    for s in specs:
        lines["test" if s.name in test else "train"].append(f"{ROOT_PREFIX}/{s.rel_path} {s.n_frames} {s.label}")
    return lines


def _write_clip(root: Path, spec: ClipSpec, frames: np.ndarray, fps: int) -> None:
    path = root / spec.rel_path
    if spec.as_frames:
        write_frame_folder(path, frames)
        return
    write_mp4(path, frames, fps)
    decoded = decoded_frame_count(path)
    if decoded != spec.n_frames:
        raise StageError(f"{path}: wrote {spec.n_frames} frames but PyAV decodes {decoded}; check the PyAV/FFmpeg install.")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Swap a finished ``tmp`` onto ``out`` with renames, so ``out`` is never half written."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def generate(cfg: Config, out_dir: str | os.PathLike) -> dict:
    """Write clips/, lists/ and manifest.json under ``out_dir`` (replacing it); return the manifest."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the renamed result should read like any other output folder
    try:
        (tmp / "clips").mkdir()
        (tmp / "lists").mkdir()
        scene = build_scene(cfg.size, cfg.identity)
        specs = plan_clips(cfg)
        for spec in tqdm(specs, desc="demo clips", unit="clip", file=sys.stderr):
            frames, _ = synthesize_clip(scene, spec)
            _write_clip(tmp, spec, frames, cfg.fps)
        splits = {}
        for split in (1, 2):
            for part, lines in split_lists(specs, cfg, split).items():
                (tmp / "lists" / f"demo_set_{split}_{part}.txt").write_text("".join(f"{l}\n" for l in lines))
                splits[f"demo_set_{split}_{part}"] = len(lines)
        manifest = {
            "source": "skimage.data.astronaut() (public domain), warped along its dlib 68 landmarks",
            "config": asdict(cfg),
            "classes": list(cfg.classes),
            "counts_per_class": {c: sum(s.label == k for s in specs) for k, c in enumerate(cfg.classes)},
            "frame_folders": sum(s.as_frames for s in specs),
            "occluded": [s.name for s in specs if s.occluded],
            "videos": sum(not s.as_frames for s in specs),
            "frames_per_clip": {s.name: s.n_frames for s in specs},
            "list_lengths": splits,
            "generation_seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest

"""FaceXFormer backend: 68 landmarks and an 11-class parsing map per frame from one network forward (SPEC §2).

Per frame, as the official inference does: a face box (detector ``none``: the whole frame, for datasets whose
frames are already face crops; ``dlib`` or ``mtcnn``: the detector's best box grown by 25 % on every side and
clipped to the frame), the crop resized to 224x224 (bicubic) and ImageNet-normalised. Crops go through the
network in batches (autocast to bf16/fp16 on CUDA). The parsing argmax at 224x224 is resized (nearest) into the
crop's place in a frame-sized map (background outside it); landmarks are mapped from [-1, 1] to frame pixels.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image

from stages.common.errors import StageError
from stages.common.face_detect import detect_faces, expand_box
from stages.faces.backends import DETECTORS, FacesConfig, FrameFaces
from stages.faces.facexformer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    FaceXFormer,
    checkpoint_file,
    load_official_checkpoint,
)

MARGIN = 0.25  # official inference: the box grows by 50 % of its size, half on each side
Box = tuple[int, int, int, int]  # x0, y0, x1, y1: the crop is rgb[y0:y1, x0:x1]
# A detector maps an RGB frame to (box x0, y0, x1, y1 in frame pixels, score), or None when it finds no face.
Detector = Callable[[np.ndarray], "tuple[tuple[float, float, float, float], float] | None"]

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)


def landmarks_to_frame(points: np.ndarray, box: Box) -> np.ndarray:
    """(68, 2) network output in [-1, 1] -> frame pixels: ``((p + 1) * 224 - 1) / 2`` in the 224 crop, scaled by
    crop size / 224 and shifted by the crop origin (SPEC §2.3)."""
    x0, y0, x1, y1 = box
    crop_px = ((np.asarray(points, np.float32) + 1) * INPUT_SIZE - 1) / 2
    scale = np.array([(x1 - x0) / INPUT_SIZE, (y1 - y0) / INPUT_SIZE], dtype=np.float32)
    return (crop_px * scale + np.array([x0, y0], dtype=np.float32)).astype(np.float32)


def paste_parsing(labels: np.ndarray, box: Box, height: int, width: int) -> np.ndarray:
    """(224, 224) class ids -> (H, W) uint8 map: resized (nearest) into the crop box, background elsewhere."""
    x0, y0, x1, y1 = box
    out = np.zeros((height, width), dtype=np.uint8)
    out[y0:y1, x0:x1] = cv2.resize(labels.astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST_EXACT)
    return out


def preprocess(crop: np.ndarray) -> torch.Tensor:
    """RGB uint8 crop -> (3, 224, 224): PIL bicubic (as torchvision's Resize of a PIL image), ImageNet-normalised."""
    resized = np.asarray(Image.fromarray(crop).resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC), dtype=np.float32)
    return torch.from_numpy(((resized / 255.0 - _MEAN) / _STD).transpose(2, 0, 1).copy())


def _whole_frame(rgb: np.ndarray):
    return (0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0])), 1.0


def _dlib_detector(upsample: int, retry_below: int, pad: float) -> Detector:
    """dlib HOG on a border-padded copy (tight crops need context), retried with more upsampling on small frames."""

    def detect(rgb: np.ndarray):
        height, width = rgb.shape[:2]
        px, py = int(round(pad * width)), int(round(pad * height))
        padded = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_REPLICATE) if px or py else rgb
        faces = detect_faces(padded, upsample)
        if not faces and min(height, width) < retry_below:
            faces = detect_faces(padded, upsample + 1)
        if not faces:
            return None
        x0, y0, x1, y1 = faces[0].box
        return (x0 - px, y0 - py, x1 - px, y1 - py), faces[0].score

    return detect


def _mtcnn_detector(device: torch.device) -> Detector:
    """facenet-pytorch MTCNN as in the official inference: the first (largest) box, its probability as score."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        raise StageError(
            "faces.detector 'mtcnn' needs facenet-pytorch, which is not installed: `pip install --no-deps "
            "facenet-pytorch==2.6.0` (its torch<2.3 pins are too strict; its MTCNN weights ship in the wheel), "
            "or set faces.detector to 'dlib' (or 'none' when frames are face crops)."
        ) from err
    mtcnn = MTCNN(keep_all=True, device=device)

    def detect(rgb: np.ndarray):
        boxes, probs = mtcnn.detect(Image.fromarray(rgb))
        return None if boxes is None else (tuple(map(float, boxes[0])), float(probs[0]))

    return detect


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StageError(f"faces.device is {name!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return device


class FaceXFormerBackend:
    name = "facexformer"

    def __init__(
        self,
        model: FaceXFormer,
        device: str = "auto",
        batch_size: int = 32,
        detector: str = "none",
        upsample: int = 1,
        retry_below: int = 192,
        pad: float = 0.25,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        if detector == "none":
            self.detect, self.margin = _whole_frame, 0.0
        elif detector == "dlib":
            self.detect, self.margin = _dlib_detector(upsample, retry_below, pad), MARGIN
        elif detector == "mtcnn":
            self.detect, self.margin = _mtcnn_detector(self.device), MARGIN
        else:
            raise StageError(f"faces.detector {detector!r} is not one of {list(DETECTORS)}.")
        cuda = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.amp = cuda

    @classmethod
    def from_config(cls, config: FacesConfig) -> FaceXFormerBackend:
        checkpoint_file(config.checkpoint)  # fail before spending seconds on building the network
        model = load_official_checkpoint(FaceXFormer(), config.checkpoint)
        return cls(model, config.device, config.batch_size, config.detector, config.upsample, config.retry_below,
                   config.pad)

    def crop_box(self, rgb: np.ndarray) -> tuple[Box, float] | None:
        """The integer crop box (as the official ``int()`` of the grown, clipped box) and the detector score."""
        found = self.detect(rgb)
        if found is None:
            return None
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = (int(v) for v in expand_box(found[0], self.margin, width, height))
        return ((x0, y0, x1, y1), found[1]) if x1 - x0 >= 2 and y1 - y0 >= 2 else None

    def analyse(self, frames: list[np.ndarray]) -> list[FrameFaces]:
        results = [FrameFaces(None, None, 0.0) for _ in frames]
        todo = [(i, found) for i, found in enumerate(map(self.crop_box, frames)) if found is not None]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            batch = torch.stack([preprocess(frames[i][y0:y1, x0:x1]) for i, ((x0, y0, x1, y1), _) in chunk])
            landmarks, labels = self._forward(batch)
            for (i, (box, score)), points, label_map in zip(chunk, landmarks, labels):
                height, width = frames[i].shape[:2]
                results[i] = FrameFaces(landmarks_to_frame(points, box), paste_parsing(label_map, box, height, width),
                                        score)
        return results

    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 68, 2) landmarks in [-1, 1] and (B, 224, 224) uint8 parsing class ids."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.model(batch.to(self.device, non_blocking=True))
        labels = out["parsing_logits"].argmax(dim=1).to(torch.uint8)
        return out["landmarks"].float().cpu().numpy(), labels.cpu().numpy()

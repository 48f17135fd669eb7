"""Offline default backend: dlib HOG face detection, dlib's 68-point predictor, parsing rasterised from landmarks."""
from __future__ import annotations

import cv2
import numpy as np

from stages.common.face_detect import detect_faces, landmarks_68
from stages.faces.backends import FrameFaces
from stages.faces.parsing import parsing_from_landmarks


class DlibBackend:
    name = "dlib"

    def __init__(self, upsample: int = 1, retry_below: int = 192, pad: float = 0.25):
        self.upsample = upsample
        self.retry_below = retry_below
        self.pad = pad

    def analyse(self, frames: list[np.ndarray]) -> list[FrameFaces]:
        return [self._one(frame) for frame in frames]

    def _one(self, rgb: np.ndarray) -> FrameFaces:
        height, width = rgb.shape[:2]
        # Face crops fill the frame; HOG needs some context around a face, so detect on a padded copy.
        px, py = int(round(self.pad * width)), int(round(self.pad * height))
        padded = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_REPLICATE) if px or py else rgb
        faces = detect_faces(padded, self.upsample)
        if not faces and min(height, width) < self.retry_below:
            faces = detect_faces(padded, self.upsample + 1)
        if not faces:
            return FrameFaces(None, None, 0.0)
        best = faces[0]  # highest detector score (the largest box can be a false hit on clothing)
        landmarks = landmarks_68(padded, best.box) - np.array([px, py], dtype=np.float32)
        return FrameFaces(landmarks, parsing_from_landmarks(landmarks, height, width), best.score)

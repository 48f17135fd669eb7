"""The interface every face backend implements, and the factory that builds one from the stage config."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stages.common.errors import StageError


@dataclass
class FrameFaces:
    """What a backend found in one frame; ``landmarks is None`` means no face."""

    landmarks: np.ndarray | None  # (68, 2) float32 (x, y) in pixels of the frame
    parsing: np.ndarray | None  # (H, W) uint8 class ids 0..10, FaceXFormer order
    score: float = 0.0  # detector confidence (backend-specific scale)

    @property
    def found(self) -> bool:
        return self.landmarks is not None


class FaceBackend(Protocol):
    name: str

    def analyse(self, frames: list[np.ndarray]) -> list[FrameFaces]:
        """One result per RGB uint8 (H, W, 3) frame, same order. Frames may be processed as a batch."""
        ...


@dataclass(frozen=True)
class FacesConfig:
    backend: str = "dlib"
    upsample: int = 1  # dlib HOG upsampling; each step doubles the image side
    retry_below: int = 192  # frames whose shorter side is below this get a second pass with upsample + 1
    pad: float = 0.25  # border added on every side (fraction of the side) before detection: tight crops need context
    # facexformer backend (SPEC §2); its "dlib" detector also uses upsample, retry_below and pad
    checkpoint: str = "weights/facexformer/model.pt"  # the official ckpts/model.pt (HF kartiknarayan/facexformer)
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    batch_size: int = 32
    detector: str = "none"  # none: frames are face crops | dlib | mtcnn (needs facenet-pytorch)

    @classmethod
    def from_dict(cls, raw: dict) -> FacesConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise StageError(f"faces config: unknown keys {unknown}; known keys are {sorted(known)}.")
        config = cls(**raw)
        if config.backend not in BACKENDS:
            raise StageError(f"faces config: backend {config.backend!r} is not one of {sorted(BACKENDS)}.")
        if not (isinstance(config.upsample, int) and 0 <= config.upsample <= 3):
            raise StageError(f"faces config: upsample must be an integer 0..3, got {config.upsample!r}.")
        if not 0 <= config.pad <= 1:
            raise StageError(f"faces config: pad must be in [0, 1], got {config.pad!r}.")
        if config.detector not in DETECTORS:
            raise StageError(f"faces config: detector {config.detector!r} is not one of {list(DETECTORS)}.")
        if not (isinstance(config.batch_size, int) and config.batch_size >= 1):
            raise StageError(f"faces config: batch_size must be a positive integer, got {config.batch_size!r}.")
        if not (isinstance(config.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", config.device)):
            raise StageError(f"faces config: device must be auto, cpu, cuda or cuda:N, got {config.device!r}.")
        if not (isinstance(config.checkpoint, str) and config.checkpoint):
            raise StageError(f"faces config: checkpoint must be a file path, got {config.checkpoint!r}.")
        return config


def _dlib(config: FacesConfig) -> FaceBackend:
    from stages.faces.dlib_backend import DlibBackend

    return DlibBackend(upsample=config.upsample, retry_below=config.retry_below, pad=config.pad)


def _facexformer(config: FacesConfig) -> FaceBackend:
    from stages.faces.facexformer_backend import FaceXFormerBackend

    return FaceXFormerBackend.from_config(config)


DETECTORS = ("none", "dlib", "mtcnn")  # face detectors of the facexformer backend
BACKENDS = {"dlib": _dlib, "facexformer": _facexformer}


def make_backend(config: FacesConfig) -> FaceBackend:
    return BACKENDS[config.backend](config)

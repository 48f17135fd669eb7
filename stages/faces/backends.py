"""The interface every face backend implements, and the factory that builds one from the stage config."""
from __future__ import annotations

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
        return config


def _dlib(config: FacesConfig) -> FaceBackend:
    from stages.faces.dlib_backend import DlibBackend

    return DlibBackend(upsample=config.upsample, retry_below=config.retry_below, pad=config.pad)


BACKENDS = {"dlib": _dlib}


def make_backend(config: FacesConfig) -> FaceBackend:
    return BACKENDS[config.backend](config)

"""The interface every caption backend implements, and the frame sampling shared by the video backends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class ClipFrames:
    """The stored frames of one clip, in time order; ``label_name`` is only passed to label-informed prompts."""

    clip_id: str
    frames: list[np.ndarray]  # RGB uint8 (H, W, 3)
    label_name: str | None = None


class CaptionBackend(Protocol):
    name: str  # backend name as written in the config, e.g. "video-llava"
    model_id: str  # what produced the captions (recorded next to them)

    def describe(self, clips: list[ClipFrames]) -> list[str]:
        """One caption per clip, same order. Clips may be processed in batches."""
        ...


def uniform_indices(n_frames: int, count: int = 8) -> np.ndarray:
    """``count`` frame indices spread evenly over ``n_frames`` (Video-LLaVA docs: ``arange(0, n, n / count)``).

    Always returns exactly ``count`` indices; clips shorter than ``count`` repeat frames. (For counts that are not
    powers of two, float rounding can add a last step just below ``n_frames``; it is cut off.)
    """
    if n_frames < 1:
        raise ValueError(f"cannot sample {count} frames from a clip with {n_frames} frames")
    return np.arange(0, n_frames, n_frames / count).astype(int)[:count]

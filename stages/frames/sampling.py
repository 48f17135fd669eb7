"""Which source frames a clip contributes: DFER-CLIP's segment sampling (SPEC §1.3).

A clip of ``n`` frames is cut into ``num_segments`` segments of ``avg = n // S`` frames and one frame is taken
per segment. Test time takes the centre of each segment. Training draws a frame uniformly from each segment
(TSN), anew every epoch; the frames stage stores the candidates so the trainer can draw without the source.
``k = ALL`` (the default) stores every frame of every segment, so the draw is exactly DFER-CLIP's
``i*avg + U{0..avg-1}``; an integer ``k`` stores ``k`` evenly spread frames per segment (cheaper; exact only
while ``avg <= k``). Clips shorter than ``num_segments`` are edge-padded (the last frame repeats).
"""
from __future__ import annotations

import numpy as np

ALL = "all"  # candidates_per_segment: every frame of each segment


def _check(n: int, num_segments: int) -> None:
    if n < 1 or num_segments < 1:
        raise ValueError(f"need n >= 1 and num_segments >= 1, got n={n}, num_segments={num_segments}")


def _edge_pad(n: int, num_segments: int) -> np.ndarray:
    """0..n-1, then the last index repeated up to length ``num_segments`` (n <= num_segments)."""
    return np.minimum(np.arange(num_segments), n - 1).astype(np.int32)


def test_indices(n: int, num_segments: int = 16) -> np.ndarray:
    """(num_segments,) centre frame of each segment: ``int(tick/2 + i*tick)`` with ``tick = n/S``."""
    _check(n, num_segments)
    if n <= num_segments:
        return _edge_pad(n, num_segments)
    tick = n / num_segments
    return np.array([int(tick / 2.0 + tick * i) for i in range(num_segments)], dtype=np.int32)


def train_candidates(n: int, num_segments: int = 16, k: int | str = ALL) -> np.ndarray:
    """(num_segments, K) candidate frames; row i lies inside segment ``[i*avg, i*avg + avg - 1]``.

    ``k = ALL``: K = avg and row i is the whole segment. Integer ``k``: the offsets ``floor((j + 0.5) * avg / k)``
    are distinct and evenly spread when ``avg >= k``; when ``avg < k`` they repeat but still cover every offset
    ``0..avg-1``. Short clips (n < S) repeat their edge-padded index (K = 1 under ALL).
    """
    _check(n, num_segments)
    if k != ALL and (not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"need k >= 1 or {ALL!r}, got {k!r}")
    if n < num_segments:
        return np.repeat(_edge_pad(n, num_segments)[:, None], 1 if k == ALL else k, axis=1)
    avg = n // num_segments
    offsets = np.arange(avg) if k == ALL else ((np.arange(k) + 0.5) * avg / k).astype(np.int32)
    return (np.arange(num_segments, dtype=np.int32)[:, None] * avg + offsets[None, :]).astype(np.int32)


def is_exact(n: int, num_segments: int = 16, k: int | str = ALL) -> bool:
    """Whether drawing among the stored candidates equals DFER-CLIP's draw over the whole segment."""
    return k == ALL or n // num_segments <= k


def draw_train_indices(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(S,) one frame per segment, uniform over that segment's distinct candidates.

    When the candidates are every frame of the segment (``k = ALL``, or ``avg <= k``) this is exactly TSN's
    ``i*avg + U{0..avg-1}``; otherwise it is uniform over ``k`` evenly spread frames.
    """
    return np.array([rng.choice(np.unique(row)) for row in np.asarray(candidates)], dtype=np.int32)


def needed_frames(n: int, num_segments: int = 16, k: int | str = ALL) -> np.ndarray:
    """Sorted distinct frames to decode: the test indices and every training candidate."""
    return np.union1d(test_indices(n, num_segments), train_candidates(n, num_segments, k)).astype(np.int32)

"""Colour images of parsing maps and landmarks, the inputs of FineCLIPER's parsing and landmark encoders.

Pure numpy/cv2 and deterministic: the same arrays always give the same pixels.
"""
from __future__ import annotations

import zlib

import cv2
import numpy as np

# RGB colour of classes 0..10 (SPEC §2.3 demo palette).
PALETTE = np.array(
    [
        (0, 0, 0), (0, 153, 255), (102, 255, 153), (0, 204, 153), (255, 255, 102), (255, 255, 204),
        (255, 153, 0), (255, 102, 255), (102, 0, 51), (255, 204, 255), (255, 0, 102),
    ],
    dtype=np.uint8,
)
LANDMARK_COLOUR = (255, 255, 255)
_SHIFT = 4


def _blend(image: np.ndarray, colour: np.ndarray, alpha: float) -> np.ndarray:
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def render_parsing(parsing: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: palette colours on black, or ``(1 - alpha) * image + alpha * colour`` over an RGB image."""
    parsing = np.asarray(parsing)
    if parsing.ndim != 2 or parsing.size and parsing.max() >= len(PALETTE):
        raise ValueError(f"parsing must be (H, W) with class ids 0..{len(PALETTE) - 1}")
    colour = PALETTE[parsing]
    if image is None:
        return colour
    if image.shape != colour.shape:
        raise ValueError(f"image shape {image.shape} does not match parsing {parsing.shape}")
    return _blend(image, colour, alpha)


def render_landmarks(
    landmarks: np.ndarray,
    height: int,
    width: int,
    image: np.ndarray | None = None,
    radius: int | None = None,
    colour: tuple[int, int, int] = LANDMARK_COLOUR,
) -> np.ndarray:
    """(H, W, 3) uint8 with one filled dot per landmark, on black or on a copy of an RGB image.

    ``radius`` defaults to 1 px per 112 px of the shorter side (2 px on a 224 px frame).
    """
    if radius is None:
        radius = max(1, round(min(height, width) / 112))
    canvas = np.zeros((height, width, 3), np.uint8) if image is None else np.array(image, dtype=np.uint8, copy=True)
    if canvas.shape != (height, width, 3):
        raise ValueError(f"image shape {canvas.shape} does not match ({height}, {width}, 3)")
    _draw_dots(canvas, landmarks, radius, colour)
    return canvas


def landmark_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8, 255 where :func:`render_landmarks` (default radius) draws a dot and 0 elsewhere: the same
    pixels as any channel of its white-on-black image, drawn on one channel."""
    mask = np.zeros((height, width), np.uint8)
    _draw_dots(mask, landmarks, max(1, round(min(height, width) / 112)), (255,))
    return mask


def _draw_dots(canvas: np.ndarray, landmarks: np.ndarray, radius: int, colour: tuple[int, ...]) -> None:
    points = np.round(np.asarray(landmarks, dtype=np.float64).reshape(-1, 2) * (1 << _SHIFT)).astype(np.int64)
    for x, y in points:
        cv2.circle(canvas, (int(x), int(y)), radius << _SHIFT, colour, thickness=-1, lineType=cv2.LINE_8, shift=_SHIFT)


# The features stage stores one map per frame holding both middle-level images, so the loader decompresses one
# buffer instead of decoding two PNGs: the parsing class id (0..10) in bits 0-6 and DOT (bit 7) on the landmark
# dots. Raw bytes with zlib rather than PNG: the same size here, and ~4x cheaper to decode (no libpng set-up per image).
DOT = 128
CLASS_BITS = DOT - 1


def encode_face_map(classes: np.ndarray, dots: np.ndarray) -> bytes:
    """zlib bytes of the (H, W) uint8 map ``classes | DOT`` where ``dots`` (a :func:`landmark_mask`) is set."""
    classes = np.asarray(classes, np.uint8)
    if classes.shape != dots.shape or classes.size and classes.max() > CLASS_BITS:
        raise ValueError(f"classes {classes.shape} and dots {dots.shape} must have one shape, class ids below {DOT}")
    return zlib.compress(np.where(dots > 0, classes | DOT, classes).astype(np.uint8).tobytes())


def decode_face_map(buffer, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 map from :func:`encode_face_map` bytes; ``& CLASS_BITS`` gives the classes, ``& DOT`` the dots."""
    raw = zlib.decompress(buffer)
    if len(raw) != height * width:
        raise ValueError(f"a face map of {len(raw)} bytes is not {height}x{width}")
    return np.frombuffer(raw, np.uint8).reshape(height, width)

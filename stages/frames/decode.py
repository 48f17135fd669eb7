"""Read selected frames of a clip, from a folder of images or from a video file, as RGB uint8 arrays.

Frame ``i`` is the i-th image of the folder in numeric file-name order, or the i-th frame the video
decoder outputs (presentation order), counting from 0. :func:`read_frames` touches only the frames
asked for: it reads only those image files, and in a video it seeks to the keyframe before each
wanted frame and decodes forward from there. :func:`read_frames_all` decodes everything; it is the
reference the tests and the benchmark compare against.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np

from stages.common.errors import StageError
from stages.common.media import list_frame_files


def _read_image(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise StageError(f"{path}: unreadable image. Re-extract the frames or remove the clip from the annotation list.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_count(source, count: int, indices: Sequence[int], n_frames: int | None) -> None:
    advice = "If the clip changed, rerun the index stage; if it is damaged, re-extract it or remove it from the annotation list."
    if n_frames is not None and count != n_frames:
        raise StageError(f"{source}: has {count} readable frames but the index says {n_frames}. {advice}")
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise StageError(f"{source}: has {count} readable frames, frame {bad[0]} was asked for. {advice}")


def _open_video(path):
    if not Path(path).is_file():
        raise StageError(f"{path}: video file not found. Fix the path in the annotation list or remove the clip.")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise _bad_video(path, err) from err
    if not container.streams.video:
        container.close()
        raise StageError(f"{path}: no video stream. Remove the clip from the annotation list.")
    # One thread per clip: shards already run in parallel, and FFmpeg's thread pools were slower
    # and erratic on busy cores (benchmarks/frames.py).
    container.streams.video[0].codec_context.thread_count = 1
    return container


def _bad_video(path, err) -> StageError:
    return StageError(f"{path}: cannot decode video ({err}). Re-encode or re-download it, or remove the clip from the annotation list.")


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.reformat(format="rgb24", threads=1).to_ndarray()


def _read_video(path, indices: Sequence[int], n_frames: int | None) -> dict[int, np.ndarray]:
    container = _open_video(path)
    try:
        with container:
            stream = container.streams.video[0]
            # A demux pass (no decoding) gives every frame's timestamp and the keyframes.
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
            _check_count(path, len(packets), indices, n_frames)
            if any(t is None for t, _ in packets):  # no timestamps to seek by: decode from the start
                return _read_video_all(container, path, indices)
            pts = sorted(t for t, _ in packets)
            keys = sorted(t for t, k in packets if k)
            wanted = {pts[i]: i for i in indices}
            out: dict[int, np.ndarray] = {}
            frames, position = None, None
            for target in sorted(wanted):
                k = bisect.bisect_right(keys, target)
                key = keys[k - 1] if k else pts[0]
                if frames is None or position < key:  # seeking skips the frames up to the keyframe
                    frames = _decode_from(container, stream, key, wanted)
                for frame in frames:
                    position = frame.pts
                    if position in wanted:
                        out[wanted[position]] = _rgb(frame)
                    if position >= target:
                        break
                if wanted[target] not in out:  # timestamps the seek could not follow: decode from the start
                    return _read_video_all(container, path, indices)
            return out
    except av.FFmpegError as err:
        raise _bad_video(path, err) from err


def _decode_from(container, stream, key: int, wanted) -> Iterator[av.VideoFrame]:
    """Frames from keyframe ``key`` on; unwanted frames that no other frame references are not decoded."""
    container.seek(key, stream=stream, backward=True)
    for packet in container.demux(stream):
        stream.codec_context.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
        yield from packet.decode()


def _read_video_all(container, path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    container.seek(0)
    container.streams.video[0].codec_context.skip_frame = "DEFAULT"
    wanted = set(indices)
    out = {i: _rgb(f) for i, f in enumerate(container.decode(video=0)) if i in wanted}
    missing = wanted - out.keys()
    if missing:
        raise StageError(f"{path}: decoded only part of the video (frame {min(missing)} missing). Re-encode it or remove the clip.")
    return out


def read_frames(source, kind: str, indices: Sequence[int], n_frames: int | None = None) -> list[np.ndarray]:
    """RGB frames ``indices`` (any order, repeats allowed) of a clip; decodes only what is needed.

    ``kind`` is ``"frames"`` (a folder of images) or ``"video"``. When ``n_frames`` is given the
    clip must have exactly that many frames (the index stage's count), else StageError.
    """
    indices = [int(i) for i in indices]
    if kind == "frames":
        files = list_frame_files(source)
        _check_count(source, len(files), indices, n_frames)
        got = {i: _read_image(files[i]) for i in set(indices)}
    elif kind == "video":
        got = _read_video(source, sorted(set(indices)), n_frames)
    else:
        raise StageError(f"{source}: unknown source kind {kind!r} (expected 'frames' or 'video'). Rerun the index stage.")
    return [got[i] for i in indices]


def read_frames_all(source, kind: str, indices: Sequence[int]) -> list[np.ndarray]:
    """Reference: read every image / decode every video frame, keep ``indices``."""
    indices = [int(i) for i in indices]
    if kind == "frames":
        frames = [_read_image(f) for f in list_frame_files(source)]
        return [frames[i] for i in indices]
    container = _open_video(source)
    try:
        with container:
            got = _read_video_all(container, source, indices)
    except av.FFmpegError as err:
        raise _bad_video(source, err) from err
    return [got[i] for i in indices]

"""Benchmark: reading only the sampled frames vs decoding everything, for mp4 clips and JPEG folders.

Generates synthetic clips in a temporary folder, times ``read_frames`` (seek to keyframe / read the
needed files) against ``read_frames_all`` (decode every frame / read every file) side by side in one
run, checks that both return the same pixels, prints a Markdown table and updates the frames section
of benchmarks/RESULTS.md.

    python benchmarks/frames.py            # ~1-2 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.frames import sampling  # noqa: E402
from stages.frames.decode import read_frames, read_frames_all  # noqa: E402
from results_file import update_section  # benchmarks/ is on sys.path when a script runs

BEGIN, END = "<!-- frames:begin -->", "<!-- frames:end -->"


def synthetic_frames(n: int, size: int):
    """A smooth random texture panning across the frame, with a bright ellipse that moves and grows."""
    rng = np.random.default_rng(n)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8), (0, 0), 6)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    for i in range(n):
        shift = int(size * i / max(n - 1, 1))
        frame = texture[shift // 2 : shift // 2 + size, shift : shift + size].copy()
        centre = (size // 2 + int(20 * np.sin(i / 7)), size // 2 + int(10 * np.cos(i / 11)))
        cv2.ellipse(frame, centre, (40 + i % 10, 55), 0, 0, 360, (200, 170, 150), -1)
        yield frame


def make_clips(root: Path, n: int, size: int, gop: int) -> tuple[Path, Path]:
    video, folder = root / f"clip{n}.mp4", root / f"clip{n}"
    folder.mkdir()
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i, rgb in enumerate(synthetic_frames(n, size)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        container.mux(stream.encode())
    return video, folder


def time_pair(selective, everything, repeats: int):
    """Median wall and CPU milliseconds of both functions, alternating them so both see the same load."""
    wall, cpu, results = ([], []), ([], []), [None, None]
    for _ in range(repeats):
        for j, fn in enumerate((selective, everything)):
            w, c = time.perf_counter(), time.process_time()
            results[j] = fn()
            wall[j].append(time.perf_counter() - w)
            cpu[j].append(time.process_time() - c)
    med = [[1000 * statistics.median(t) for t in pair] for pair in (wall, cpu)]
    return med[0], med[1], results


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return (f"{os.cpu_count()} CPU cores ({cpu}), no GPU; {platform.system()} {platform.release()}; Python {platform.python_version()}; "
            f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), "
            f"OpenCV {cv2.__version__}, NumPy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 120, 300, 900, 1800], help="clip lengths in frames")
    parser.add_argument("--size", type=int, default=224, help="frame width and height")
    parser.add_argument("--gop", type=int, default=25, help="H.264 keyframe interval")
    parser.add_argument("--k", type=int, default=3, help="training candidates per segment")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    args = parser.parse_args()

    header = ("| source | clip frames | plan | frames returned | selective (ms) | everything (ms) | ratio (wall) | ratio (CPU) |\n"
              "|---|---:|---|---:|---:|---:|---:|---:|")
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            video, folder = make_clips(Path(tmp), n, args.size, args.gop)
            plans = {"test (16)": sampling.test_indices(n), f"test + train K={args.k}": sampling.needed_frames(n, k=args.k)}
            for kind, source, label in (("video", video, "mp4 H.264"), ("frames", folder, "JPEG folder")):
                for plan, indices in plans.items():
                    wall, cpu, (got, ref) = time_pair(lambda: read_frames(source, kind, indices, n_frames=n),
                                                      lambda: read_frames_all(source, kind, indices), args.repeats)
                    assert all(np.array_equal(a, b) for a, b in zip(got, ref)), (label, n, plan)
                    row = (f"| {label} | {n} | {plan} | {len(set(indices.tolist()))} | {wall[0]:.1f} | {wall[1]:.1f} "
                           f"| {wall[1] / wall[0]:.1f}x | {cpu[1] / cpu[0]:.1f}x |")
                    rows.append(row)
                    print(row, flush=True)

    if args.no_write:
        return
    command = "python benchmarks/frames.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        BEGIN,
        "## Frames: selective decoding vs decode-everything (`benchmarks/frames.py`)",
        "",
        f"Machine: {machine()}.",
        f"Synthetic {args.size}x{args.size} clips; mp4 = H.264 (libx264 default preset, B-frames, keyframe every {args.gop} frames); "
        "JPEG folder = one quality-90 file per frame. Median of "
        f"{args.repeats} repeats (the two paths alternate, warm page cache), identical pixels checked; ratios = everything / "
        "selective, from wall-clock and from process CPU time (the CPU ratio is steadier on a shared machine). "
        "*selective* = `read_frames` (seek to the keyframe before each needed frame and decode forward / read only the "
        "needed files); *everything* = `read_frames_all` (decode every frame, convert the needed ones / read every file).",
        "",
        f"Reproduce: `{command.strip()}`",
        "",
        header,
        *rows,
        "",
        "Reading it: for mp4 the selective path decodes, per needed frame, from the keyframe before it (non-reference "
        "frames that are not needed are skipped), so its cost grows until the clip is about 16 keyframe intervals long "
        "and then stays flat, while decode-everything grows linearly. The K=3 training candidates spread over every "
        "segment and touch most keyframe intervals of clips up to a few hundred frames, so there the gain is small; "
        "for short clips (< ~120 frames) both paths cost the same. JPEG folders (the official DFEW / FERV39k / MAFW "
        "face frames) read only the needed files; the remaining growth is listing the folder.",
        END,
    ])
    update_section(args.results, BEGIN, END, section)


if __name__ == "__main__":
    main()

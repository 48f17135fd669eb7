"""Benchmark: one epoch of test clips from the features cache (Parquet with JPEG bytes) vs from JPEG frame folders.

Generates, in a temporary folder, N clips per length as frame folders of JPEG files and a features cache
(FEATURES_SCHEMA) holding the same JPEG bytes for the frames the frames stage keeps, plus synthetic parsing
maps and landmarks. Times, side by side in one run, an epoch of test-mode batches (16 segment centres, resize
to S x S, float tensors) from (a) ``ClipDataset`` + ``make_loader`` over the cache, frames only and frames +
parsing + landmarks, and (b) ``read_frames`` of the same 16 indices from the folders + resize + to tensor,
through the same DataLoader, with the files in the page cache and dropped from it. Checks that (a) and (b)
give identical frames, prints a Markdown table and updates the data-loading section of benchmarks/RESULTS.md.

    python benchmarks/data_loading.py      # ~1-2 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.frames import synthetic_frames  # noqa: E402
from stages.common.io import write_parquet  # noqa: E402
from stages.common.schemas import FEATURES_SCHEMA  # noqa: E402
from stages.faces.parsing import encode_parsing  # noqa: E402
from stages.faces.render import landmark_mask  # noqa: E402
from stages.frames import sampling  # noqa: E402
from stages.frames.decode import read_frames  # noqa: E402
from stages.train.data import ClipDataset, DataConfig, collate, make_loader, transform  # noqa: E402
from results_file import update_section  # benchmarks/ is on sys.path when a script runs

BEGIN, END = "<!-- data_loading:begin -->", "<!-- data_loading:end -->"
T, K, CLASSES = 16, 3, 7
READING = (
    "Reading it: with a warm page cache, test-mode loading from the cache and from JPEG folders costs the same for "
    "short clips: both decode the same 16 JPEGs (~3 ms per clip), and the rest goes into float conversion and "
    "batching. Folders get slower as clips get longer (listing and sorting every clip's folder) and when the files "
    "are not in the page cache (one open and read per frame; measured here on a virtual disk, network or spinning "
    "disks are slower), while the cache reads its shard once, when the dataset is built, and then serves from "
    "memory; it is also about 5x smaller than the folders of 300-frame clips, keeping only the test frames and "
    f"K={K} training candidates per segment. Adding parsing and landmark images takes about 3-4x the frames-only time "
    "(PNG decode, colouring, dot drawing and two more tensors per clip). Next to a CPU training step "
    "(benchmarks/train_step.py: 14-96 s per clip at batch 1) loading is negligible; for a GPU, budget ~45 ms per clip per "
    "loader worker for the star variants' inputs. Torch runs with one thread here (`--threads 1`), as in DataLoader "
    "workers: with the default two threads on this shared machine, the uint8-to-float conversion alone took ~16 ms "
    "instead of ~0.8 ms per clip, which matters with `num_workers: 0`. Training mode (augmentation) is not measured."
)


def face_maps(size: int) -> tuple[bytes, list[float], bytes]:
    """A parsing PNG (skin, brows, eyes, nose, lips, hair as ellipses), 68 landmarks on the face and their
    rendered dots (the features stage's ``landmarks_png``)."""
    classes = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 224  # centre, scale from a 224 px layout
    for label, x, y, w, h in ((10, 0, -30, 85, 80), (1, 0, 0, 70, 90), (2, -30, -35, 18, 5), (3, 30, -35, 18, 5),
                              (4, -28, -20, 12, 6), (5, 28, -20, 12, 6), (6, 0, 5, 9, 18), (7, 0, 38, 22, 5),
                              (8, 0, 44, 20, 3), (9, 0, 50, 22, 5)):
        cv2.ellipse(classes, (int(c + x * s), int(c + y * s)), (int(w * s), int(h * s)), 0, 0, 360, label, -1)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([c + 60 * s * np.cos(angles), c + 80 * s * np.sin(angles)], 1).astype(np.float32)
    return encode_parsing(classes), points.ravel().tolist(), encode_parsing(landmark_mask(points, size, size))


def make_clips(root: Path, n: int, clips: int, size: int) -> tuple[list[Path], Path]:
    """``clips`` frame folders of ``n`` quality-90 JPEGs and a features shard holding the same JPEG bytes."""
    frames = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in synthetic_frames(n, size)]
    parsing, landmarks, dots = face_maps(size)
    kept = sampling.needed_frames(n, T, K)
    folders, rows = [], []
    for i in range(clips):  # each clip its own pixels (shifted), so no two clips share JPEG bytes
        jpegs = [cv2.imencode(".jpg", np.roll(bgr, 3 * i, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for bgr in frames]
        folder = root / f"{n}" / f"clip{i:04d}"
        folder.mkdir(parents=True)
        for j, data in enumerate(jpegs):
            (folder / f"{j:06d}.jpg").write_bytes(data)
        folders.append(folder)
        rows.append(dict(clip_id=f"bench-{n}-{i:04d}", label=i % CLASSES, class_name=f"class{i % CLASSES}",
                         splits=[{"fold": "fold1", "split": "test"}], n_frames=n,
                         test_indices=sampling.test_indices(n, T).tolist(),
                         train_candidates=sampling.train_candidates(n, T, K).ravel().tolist(),
                         frame_indices=kept.tolist(), jpeg=[jpegs[j] for j in kept], parsing_png=[parsing] * len(kept),
                         landmarks=[landmarks] * len(kept), landmarks_png=[dots] * len(kept), face_status=["detected"] * len(kept), width=size,
                         height=size))
    shard = root / f"features-{n}.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA), shard)
    return folders, shard


class FolderClips(Dataset):
    """Test-mode clips straight from frame folders: the 16 segment centres, resized, as (T, 3, S, S) in [0, 1]."""

    def __init__(self, folders: list[Path], n: int, size: int):
        self.folders, self.n, self.size = folders, n, size
        self.indices = sampling.test_indices(n, T)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> dict:
        frames = np.stack([transform(f, None, self.size) for f in read_frames(self.folders[i], "frames", self.indices, self.n)])
        return {"frames": torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()).float().div_(255), "label": i % CLASSES}


def epoch(loader) -> list[torch.Tensor]:
    return [batch["frames"] for batch in loader]


def disk_mb(files: list[Path]) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def drop_page_cache(files: list[Path]) -> None:
    """Ask the kernel to drop the (clean) cached pages of ``files``, so that the next read goes to the disk."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def machine() -> str:
    info = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if info.exists() else platform.processor()
    return (f"{os.cpu_count()} CPU cores ({cpu}), no GPU; {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}; PyTorch {torch.__version__}, PyArrow {pa.__version__}, OpenCV {cv2.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64, help="clips per epoch")
    parser.add_argument("--lengths", type=int, nargs="+", default=[30, 300], help="clip lengths in frames")
    parser.add_argument("--size", type=int, default=224, help="frame width and height, on disk and in the batches")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (DataLoader workers use one each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per path, after one checking epoch")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    args = parser.parse_args()

    header = ("| clip frames | source | outputs | on disk (MB) | open (s) | epoch wall (s) | epoch CPU (s) | ms per clip "
              "| wall / cache frames | CPU / cache frames |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(header, flush=True)
    torch.set_num_threads(args.threads)
    rows, load = [], [os.getloadavg()[0]]
    config = DataConfig(image_size=args.size, num_workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            folders, shard = make_clips(Path(tmp), n, args.clips, args.size)
            os.sync()  # written pages become clean, so they can be dropped from the page cache
            files = [f for folder in folders for f in folder.iterdir()]
            paths = {}  # (source, outputs) -> (loader factory, files dropped from the page cache before each epoch)
            opened = {}  # (source, outputs) -> (open seconds or None, MB on disk)
            for outputs, modalities in (("frames", {"frames"}), ("frames + parsing + landmarks", {"frames", "parsing", "landmarks"})):
                drop_page_cache([shard])
                started = time.perf_counter()
                dataset = ClipDataset([str(shard)], "fold1", "test", config, train=False, modalities=modalities)
                opened["features cache", outputs] = (time.perf_counter() - started, disk_mb([shard]))
                paths["features cache", outputs] = (partial(make_loader, dataset, args.batch, shuffle=False, drop_last=False,
                                                            seed=0, num_workers=args.workers), [])
            folder_loader = partial(DataLoader, FolderClips(folders, n, args.size), args.batch, num_workers=args.workers,
                                    collate_fn=collate)
            for source, drop in (("JPEG folders", []), ("JPEG folders, page cache dropped", files)):
                opened[source, "frames"] = (None, disk_mb(files))
                paths[source, "frames"] = (folder_loader, drop)

            reference = None
            for key, (loader, drop) in paths.items():  # checking epoch: identical frames from every path
                drop_page_cache(drop)
                frames = epoch(loader())
                reference = reference or frames
                assert len(frames) == len(reference) and all(map(torch.equal, frames, reference)), key
            wall, cpu = {key: [] for key in paths}, {key: [] for key in paths}
            for _ in range(args.repeats):  # the paths alternate so all see the same load
                for key, (loader, drop) in paths.items():
                    drop_page_cache(drop)
                    w, c = time.perf_counter(), time.process_time()
                    epoch(loader())
                    wall[key].append(time.perf_counter() - w)
                    cpu[key].append(time.process_time() - c)
            wall = {key: statistics.median(v) for key, v in wall.items()}
            cpu = {key: statistics.median(v) for key, v in cpu.items()}
            base = ("features cache", "frames")
            for key in paths:
                seconds, mb = opened[key]
                row = (f"| {n} | {key[0]} | {key[1]} | {mb:.1f} | {'-' if seconds is None else f'{seconds:.2f}'} "
                       f"| {wall[key]:.2f} | {cpu[key]:.2f} | {1000 * wall[key] / args.clips:.1f} "
                       f"| {wall[key] / wall[base]:.2f}x | {cpu[key] / cpu[base]:.2f}x |")
                rows.append(row)
                print(row, flush=True)
            load.append(os.getloadavg()[0])

    if args.no_write:
        return
    command = "python benchmarks/data_loading.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        BEGIN,
        "## Data loading: features cache vs JPEG frame folders (`benchmarks/data_loading.py`)",
        "",
        f"Machine: {machine()}; 1-minute load average {min(load):.1f}-{max(load):.1f} during the run.",
        f"One epoch = {args.clips} synthetic {args.size}x{args.size} clips in test mode (the {T} segment centres, resized "
        f"to {args.size}x{args.size}, float tensors in [0, 1]) in batches of {args.batch}, {args.workers} DataLoader "
        "workers. *features cache* = `ClipDataset` + `make_loader` over one Parquet shard (FEATURES_SCHEMA: the "
        f"JPEG bytes of the test frames and K={K} training candidates per segment, parsing PNGs, landmarks), "
        "outputs frames only or frames + rendered parsing + landmark images; *JPEG folders* = `read_frames` of the "
        "same 16 frames from a folder of one quality-90 JPEG per source frame + resize + to tensor, through the same "
        "DataLoader and collate. Both hold the same JPEG bytes; identical frames checked. Median of "
        f"{args.repeats} epochs per path (the paths alternate); warm page cache, except that *page cache dropped* "
        "drops every frame file from it (`posix_fadvise` DONTNEED; directory entries stay cached) before each epoch. "
        "*open* = building the `ClipDataset` from a shard dropped from the page cache (reading it into memory, once "
        "per training run). Ratios = epoch time / the cache's frames-only epoch, from wall-clock and process CPU time.",
        "",
        f"Reproduce: `{command.strip()}`",
        "",
        header,
        *rows,
        "",
        READING,
        END,
    ])
    update_section(args.results, BEGIN, END, section)

if __name__ == "__main__":
    main()

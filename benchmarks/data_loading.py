"""Benchmark: one epoch of test clips from the features cache (Parquet with JPEG bytes) vs from JPEG frame folders.

Generates, in a temporary folder, N clips per length as frame folders of JPEG files and a features cache
(FEATURES_SCHEMA) holding the same JPEG bytes for the frames the frames stage keeps, plus synthetic parsing
maps and landmarks. Times, side by side in one run, an epoch of test-mode batches (16 segment centres, resize
to S x S, float tensors) from (a) ``ClipDataset`` + ``make_loader`` over the cache, frames only and frames +
parsing + landmarks, and (b) ``read_frames`` of the same 16 indices from the folders + resize + to tensor,
through the same DataLoader, with the files in the page cache and dropped from it. Checks that (a) and (b)
give identical frames, prints a Markdown table and updates the data-loading section of benchmarks/RESULTS.md.
The cache's batches are counted up to the models' float inputs: ``model_inputs`` runs on the CPU, as the training
loop would run it on its device. CPU time includes the DataLoader workers (exited children).

``--before DIR`` instead compares the cache's loading, frames only and frames + parsing + landmarks, of the code in
DIR (a git worktree of the code before a change) with this checkout's, side by side: one server process per code
version imports that version's ``stages``, writes its own shard of the same clips and times epochs on request, the
versions alternating; the outputs of both are checked identical (a digest of every batch). It prints a table.

    python benchmarks/data_loading.py      # ~1-2 minutes on 2 CPU cores
    python benchmarks/data_loading.py --before ../main-worktree --lengths 30 --clips 32 --workers 0
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
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
CODE = Path(sys.argv[sys.argv.index("--serve") + 1]).resolve() if "--serve" in sys.argv else ROOT  # code under test
sys.path.insert(0, str(CODE))
from benchmarks.frames import synthetic_frames  # noqa: E402
from stages.common.config import read_settings, stage_section  # noqa: E402
from stages.common.io import write_parquet  # noqa: E402
from stages.common.schemas import FEATURES_SCHEMA  # noqa: E402
from stages.train import data  # noqa: E402
from stages.faces.parsing import encode_parsing  # noqa: E402
from stages.faces.render import landmark_mask  # noqa: E402
from stages.frames import sampling  # noqa: E402
from stages.frames.decode import read_frames  # noqa: E402
from stages.train.data import AugmentConfig, ClipDataset, DataConfig, collate, make_loader, transform  # noqa: E402
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
    f"K={K} training candidates per segment. Adding parsing and landmark images (one face-map decompression per "
    "frame in the loader, then `model_inputs` colours the parsing class ids and converts both to float, which a training "
    "run does on its device and this table counts on the CPU) costs about 2-2.8x the frames-only time; the loader alone "
    "costs 1.4-1.7x (issue-12 section). Next to a CPU training step (benchmarks/train_step.py: 14-96 s per clip at batch 1) loading is "
    "negligible; for a GPU, budget ~25 ms per clip per loader worker for the star variants' inputs. Torch runs with one thread here (`--threads 1`), as in DataLoader "
    "workers: with the default two threads on this shared machine, the uint8-to-float conversion alone took ~16 ms "
    "instead of ~0.8 ms per clip, which matters with `num_workers: 0`. Training mode (augmentation) is not measured."
)


def face_maps(size: int) -> dict[str, bytes]:
    """The map columns of one frame for the code under test: a parsing map (skin, brows, eyes, nose, lips, hair as
    ellipses) and the dots of 68 landmarks on the face, as one face map (``face_maps``), or, for the code before it,
    as a parsing PNG and a dot PNG; and the landmarks."""
    classes = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 224  # centre, scale from a 224 px layout
    for label, x, y, w, h in ((10, 0, -30, 85, 80), (1, 0, 0, 70, 90), (2, -30, -35, 18, 5), (3, 30, -35, 18, 5),
                              (4, -28, -20, 12, 6), (5, 28, -20, 12, 6), (6, 0, 5, 9, 18), (7, 0, 38, 22, 5),
                              (8, 0, 44, 20, 3), (9, 0, 50, 22, 5)):
        cv2.ellipse(classes, (int(c + x * s), int(c + y * s)), (int(w * s), int(h * s)), 0, 0, 360, label, -1)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([c + 60 * s * np.cos(angles), c + 80 * s * np.sin(angles)], 1).astype(np.float32)
    dots, maps = landmark_mask(points, size, size), {"landmarks": points.ravel().tolist()}
    if "face_maps" in FEATURES_SCHEMA.names:
        from stages.faces.render import encode_face_map
        return {**maps, "face_maps": encode_face_map(classes, dots)}
    return {**maps, "parsing_png": encode_parsing(classes), "landmarks_png": encode_parsing(dots)}


def make_clips(root: Path, n: int, clips: int, size: int) -> tuple[list[Path], Path]:
    """``clips`` frame folders of ``n`` quality-90 JPEGs and a features shard holding the same JPEG bytes."""
    frames = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in synthetic_frames(n, size)]
    maps = face_maps(size)
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
                         frame_indices=kept.tolist(), jpeg=[jpegs[j] for j in kept],
                         **{column: [value] * len(kept) for column, value in maps.items()},
                         face_status=["detected"] * len(kept), width=size, height=size))
    shard = root / f"features-{n}.parquet"
    write_parquet(pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA), shard)
    return folders, shard


class FolderClips(Dataset):
    """Test-mode clips straight from frame folders: the 16 segment centres, resized, as (T, 3, S, S) uint8 (made float
    by ``model_inputs``, like the cache's)."""

    def __init__(self, folders: list[Path], n: int, size: int):
        self.folders, self.n, self.size = folders, n, size
        self.indices = sampling.test_indices(n, T)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> dict:
        frames = np.stack([transform(f, None, self.size) for f in read_frames(self.folders[i], "frames", self.indices, self.n)])
        return {"frames": torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()), "label": i % CLASSES}


def epoch(loader, config: DataConfig, keys=("frames",)) -> tuple[list[torch.Tensor], float]:
    """One pass over ``loader``: the ``keys`` of each batch as the models get them (``model_inputs`` on the CPU; the
    code before it made float items in the loader), and the CPU seconds spent in ``model_inputs``."""
    finish = getattr(data, "model_inputs", None)
    cpu, out, spent = torch.device("cpu"), [], 0.0
    for batch in loader:
        if finish:
            started = time.process_time()
            batch = finish(batch, config, cpu)
            spent += time.process_time() - started
        out += [batch[key] for key in keys if key in batch]
    return out, spent


def cpu_seconds() -> float:
    """CPU time of this process and of its exited children (the DataLoader workers of finished epochs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


REAL_DATASETS = ("dfew", "ferv39k", "mafw")  # --before --train DATASET: that dataset's training augmentation


def dataset_augment(dataset: str) -> AugmentConfig:
    """The training augmentation that config/config.yaml (with the dataset's settings file) gives ``dataset``."""
    config = read_settings(ROOT / "config/config.yaml")
    entry = config["datasets"][dataset]
    settings = read_settings(ROOT / entry["settings"]) if "settings" in entry else {}
    return DataConfig.from_dict(stage_section(config, "train", dataset, settings)["data"]).augment
OUTPUTS = {"frames": {"frames"}, "frames + parsing + landmarks": {"frames", "parsing", "landmarks"}}
IMAGES = ("frames", "parsing", "landmarks")


def serve(args: argparse.Namespace) -> None:
    """``--serve DIR``: write the code in DIR's shard of the benchmark clips (first length), then answer one request
    per line of stdin with one JSON line: ``check OUTPUTS`` the digest of an epoch's model inputs, ``time OUTPUTS``
    an epoch's wall and CPU seconds."""
    torch.set_num_threads(args.threads)
    config = DataConfig(image_size=args.size, num_workers=args.workers,
                        augment=dataset_augment(args.train) if args.train else AugmentConfig())
    with tempfile.TemporaryDirectory() as tmp:
        _, shard = make_clips(Path(tmp), args.lengths[0], args.clips, args.size)
        loaders = {outputs: partial(make_loader, ClipDataset([str(shard)], "fold1", "test", config, train=bool(args.train),
                                                              modalities=modalities),
                                    args.batch, shuffle=False, drop_last=False, seed=0, num_workers=args.workers)
                   for outputs, modalities in OUTPUTS.items()}
        print(json.dumps({"ready": data.__file__, "model_inputs": hasattr(data, "model_inputs")}), flush=True)
        for line in sys.stdin:
            request, outputs = line.rstrip("\n").split(" ", 1)
            if request == "check":
                digest = hashlib.sha256()
                for tensor in epoch(loaders[outputs](), config, keys=IMAGES)[0]:
                    digest.update(tensor.contiguous().numpy().tobytes())
                print(json.dumps({"digest": digest.hexdigest()}), flush=True)
            else:
                wall, cpu = time.perf_counter(), cpu_seconds()
                _, converting = epoch(loaders[outputs](), config, keys=())
                print(json.dumps({"wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu,
                                  "loader": cpu_seconds() - cpu - converting}), flush=True)


def compare(args: argparse.Namespace) -> None:
    """``--before DIR``: the cache's loading by the code in DIR and by this checkout, alternating; prints a table."""
    codes = {"before": args.before.resolve(), "after": ROOT}
    options = [f"--{key}={getattr(args, key)}" for key in ("clips", "size", "batch", "workers", "threads")]
    options += [f"--train={args.train}"] * bool(args.train)
    servers = {name: subprocess.Popen([sys.executable, __file__, "--serve", str(code), *options, "--lengths",
                                       str(args.lengths[0])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for name, code in codes.items()}

    def ask(name: str, request: str) -> dict:
        servers[name].stdin.write(request + "\n")
        servers[name].stdin.flush()
        return json.loads(servers[name].stdout.readline())

    converts = {}  # code -> whether it has model_inputs
    for name, server in servers.items():
        ready = json.loads(server.stdout.readline())
        assert Path(ready["ready"]).is_relative_to(codes[name]), (name, ready)  # each server runs its own code
        converts[name] = ready["model_inputs"]
    for outputs in OUTPUTS:  # the same model inputs from both versions
        digests = {name: ask(name, f"check {outputs}")["digest"] for name in codes}
        assert digests["before"] == digests["after"], (outputs, digests)
    times = {(name, outputs): [] for name in codes for outputs in OUTPUTS}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):  # versions and outputs alternate, so all see the same load
        for outputs in OUTPUTS:
            for name in codes:
                times[name, outputs].append(ask(name, f"time {outputs}"))
        load.append(os.getloadavg()[0])
    for server in servers.values():
        server.stdin.close()
        server.wait()

    median = {key: {k: statistics.median(t[k] for t in runs) for k in ("wall", "cpu", "loader")}
              for key, runs in times.items()}
    mode = f"training mode ({args.train}'s augmentation: {dataset_augment(args.train)})" if args.train else "test mode"
    print(f"{args.clips} clips of {args.lengths[0]} frames, {mode}, {args.size} px, batch {args.batch}, "
          f"{args.workers} workers, {args.threads} torch thread(s), median of {args.repeats} epochs; 1-minute load "
          f"average {min(load):.1f}-{max(load):.1f}; identical model inputs checked")
    print("| code | outputs | CPU ms per clip | of it model_inputs | wall ms per clip | CPU / frames only "
          "| loader CPU (without model_inputs) / frames only | wall / frames only |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for name, outputs in times:
        m, base = median[name, outputs], median[name, "frames"]
        converting = f"{1000 * (m['cpu'] - m['loader']) / args.clips:.1f}" if converts[name] else "-"
        print(f"| {name} | {outputs} | {1000 * m['cpu'] / args.clips:.1f} | {converting} "
              f"| {1000 * m['wall'] / args.clips:.1f} | {m['cpu'] / base['cpu']:.2f}x | {m['loader'] / base['loader']:.2f}x "
              f"| {m['wall'] / base['wall']:.2f}x |")


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
    parser.add_argument("--before", type=Path, help="a checkout of the code before (git worktree): compare its cache "
                        "loading with this checkout's (first of --lengths) and print the table")
    parser.add_argument("--train", choices=REAL_DATASETS, help="with --before: training mode (the training "
                        "draw of frames, this dataset's augmentation) instead of test mode")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # a --before comparison's timing process
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    if args.before:
        return compare(args)

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
                frames, _ = epoch(loader(), config)
                reference = reference or frames
                assert len(frames) == len(reference) and all(map(torch.equal, frames, reference)), key
            wall, cpu = {key: [] for key in paths}, {key: [] for key in paths}
            for _ in range(args.repeats):  # the paths alternate so all see the same load
                for key, (loader, drop) in paths.items():
                    drop_page_cache(drop)
                    w, c = time.perf_counter(), cpu_seconds()
                    epoch(loader(), config, keys=())
                    wall[key].append(time.perf_counter() - w)
                    cpu[key].append(cpu_seconds() - c)
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
        f"JPEG bytes of the test frames and K={K} training candidates per segment, face maps, landmarks), "
        "outputs frames only or frames + rendered parsing + landmark images, made float by `model_inputs` on the CPU "
        "(as the training loop does on its device); *JPEG folders* = `read_frames` of the "
        "same 16 frames from a folder of one quality-90 JPEG per source frame + resize + to tensor, through the same "
        "DataLoader, collate and `model_inputs`. Both hold the same JPEG bytes; identical frames checked. Median of "
        f"{args.repeats} epochs per path (the paths alternate); warm page cache, except that *page cache dropped* "
        "drops every frame file from it (`posix_fadvise` DONTNEED; directory entries stay cached) before each epoch. "
        "*open* = building the `ClipDataset` from a shard dropped from the page cache (reading it into memory, once "
        "per training run). Ratios = epoch time / the cache's frames-only epoch, from wall-clock and CPU time (of the "
        "process and its DataLoader workers).",
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

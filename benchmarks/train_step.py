"""Benchmark: one training step of FineCLIPER (adapters, frozen CLIP) vs full fine-tuning (DFER-CLIP), on CPU.

One step = forward + loss + backward + SGD (momentum 0.9) step on a random batch of ``--frames`` frames at
``--size`` px, with randomly initialised towers (no weights needed). Every configuration runs in its own
fresh subprocess, one after the other, so its peak RSS is its own. Prints a Markdown table and updates
the train-step section of benchmarks/RESULTS.md.

    python benchmarks/train_step.py               # ~11 minutes on 2 CPU cores (star-dagger ~95 s a step)
    python benchmarks/train_step.py --configs base full   # ~4 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stages.train.models.dfer_clip import DferClip, DferClipConfig, read_descriptors  # noqa: E402
from stages.train.models.fineclip import VARIANTS, FineClip, FineClipConfig  # noqa: E402
from stages.train.models.towers import TowerConfig, build_clip  # noqa: E402
from results_file import update_section  # benchmarks/ is on sys.path when a script runs

BEGIN, END = "<!-- train_step:begin -->", "<!-- train_step:end -->"
DESCRIPTORS = ROOT / "config/prompts/dfer_clip_descriptors.yaml"
CAPTION = ("The person's eyebrows draw together and lower while the upper eyelids tighten; the lips press "
           "together, then the corners of the mouth pull down slightly and the chin raises.")
CONFIGS = {  # name -> (label, tower), in table order
    "base": ("FineCLIPER base: adapters, frames", "ViT-B-16"),
    "star-dagger": ("FineCLIPER star-dagger: adapters, frames + parsing + landmarks + caption", "ViT-B-16"),
    "full": ("full fine-tune: DFER-CLIP, whole visual tower trains", "ViT-B-16"),
    "full-b32": ("DFER-CLIP as published (full fine-tune)", "ViT-B-32"),
}
READING = (
    "Reading it: on CPU, training only the adapters does not make a step cheaper than fine-tuning the whole visual "
    "tower; here it is slower and needs more memory. The gradient still flows back through every frozen block to "
    "reach the adapters of the early blocks, so only the weight-gradient half of the backward pass is saved (and the "
    "gradient and momentum buffers of the 86 M visual weights, ~0.7 GB), while FineCLIPER adds work DFER-CLIP does "
    "not have: AIM's temporal adapter re-runs each block's frozen attention along time, and the PN label text tower "
    "(2 x 7 prompts of 77 tokens, adapters in every layer) runs forward and backward at every step; in a separately "
    "profiled base step (batch 1) each took roughly a quarter of the CPU time. The text tower's cost is per step, not "
    "per clip, so its share falls at larger batches. Star-dagger runs the vision tower on three 16-image inputs, "
    "hence about twice the base step. Activations dominate memory (peak minus RSS after build: 3.5-5.3 GB per 16-frame "
    "clip at ViT-B/16, more for star-dagger) and grow with the batch. DFER-CLIP's own ViT-B/32 (49 patches instead "
    "of 196) is about twice as fast as the same model at ViT-B/16. What the adapters buy is the trainable-parameter "
    "count (a 14-23 M checkpoint instead of 88 M; the paper's argument), not compute per step."
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def build(name: str, frames: int) -> torch.nn.Module:
    descriptors = read_descriptors(DESCRIPTORS)
    classes = list(descriptors)[:7]
    arch = CONFIGS[name][1]
    if name.startswith("full"):
        return DferClip(build_clip(TowerConfig(arch=arch, random_init=True)), classes, descriptors, DferClipConfig(), frames)
    long_clip = None
    if "text" in VARIANTS[name]:
        long_clip = build_clip(TowerConfig(arch=arch, random_init=True, context_length=248), seed=1)
    return FineClip(build_clip(TowerConfig(arch=arch, random_init=True)), classes, FineClipConfig(variant=name), frames,
                    long_clip)


def worker(args) -> dict:
    """Build one configuration, take 1 + repeats steps, report per-step times (after the warm-up) and memory."""
    torch.manual_seed(0)
    model = build(args.worker, args.frames).train()
    shape = (args.batch, args.frames, 3, args.size, args.size)
    batch = {"frames": torch.rand(shape), "parsing": torch.rand(shape), "landmarks": torch.rand(shape),
             "caption": [CAPTION] * args.batch, "label": torch.randint(0, 7, (args.batch,))}
    optimizer = torch.optim.SGD(model.param_groups(1e-3), lr=1e-3, momentum=0.9)
    built = peak_rss_mb()
    wall, cpu = [], []
    for _ in range(1 + args.repeats):
        w, c = time.perf_counter(), time.process_time()
        loss = model.loss(model(batch), batch["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()),
            "wall": statistics.median(wall[1:]), "cpu": statistics.median(cpu[1:]), "warmup": wall[0],
            "built_mb": built, "peak_mb": peak_rss_mb()}


def machine() -> str:
    info = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if info.exists() else platform.processor()
    return (f"{os.cpu_count()} CPU cores ({cpu}), no GPU, {torch.get_num_threads()} torch threads; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}; PyTorch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=1, help="clips per step")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=224, help="frame width and height")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    names = [name for name in CONFIGS if name in args.configs]  # the first one is the reference of the ratios
    results, load, started = {}, [os.getloadavg()[0]], time.perf_counter()
    for name in names:
        options = [f"--{key}={getattr(args, key)}" for key in ("batch", "frames", "size", "repeats")]
        run = subprocess.run([sys.executable, __file__, "--worker", name, *options], check=True, stdout=subprocess.PIPE, text=True)
        results[name] = json.loads(run.stdout.splitlines()[-1])
        load.append(os.getloadavg()[0])
        print(f"{name}: {results[name]['wall']:.1f} s a step", file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - started) / 60

    ref = results[names[0]]
    header = ("| configuration | tower | trainable params (M) | step wall (s) | step CPU (s) | RSS after build (MB) "
              f"| peak RSS (MB) | wall / {names[0]} | CPU / {names[0]} | peak RSS / {names[0]} |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name, r in results.items():
        label, arch = CONFIGS[name]
        rows.append(f"| {label} | {arch} | {r['trainable'] / 1e6:.2f} of {r['total'] / 1e6:.0f} | {r['wall']:.1f} "
                    f"| {r['cpu']:.1f} | {r['built_mb']:.0f} | {r['peak_mb']:.0f} | {r['wall'] / ref['wall']:.2f}x "
                    f"| {r['cpu'] / ref['cpu']:.2f}x | {r['peak_mb'] / ref['peak_mb']:.2f}x |")
    print(header, *rows, sep="\n")

    full = results.get("full")
    ratios = [f"full fine-tune (ViT-B/16) / FineCLIPER {name}: wall {full['wall'] / results[name]['wall']:.2f}x, CPU "
              f"{full['cpu'] / results[name]['cpu']:.2f}x, peak RSS {full['peak_mb'] / results[name]['peak_mb']:.2f}x"
              for name in ("base", "star-dagger") if full and name in results]
    if ratios:
        print("\n" + "; ".join(ratios))
    if args.no_write:
        return
    command = "python benchmarks/train_step.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        BEGIN,
        "## Training step: adapters vs full fine-tuning, CPU (`benchmarks/train_step.py`)",
        "",
        f"Machine: {machine()}; 1-minute load average {min(load):.1f}-{max(load):.1f} during the run ({minutes:.0f} "
        "minutes in all).",
        f"One step = forward + loss + backward + SGD step (momentum 0.9) on batch {args.batch} of {args.frames} frames at "
        f"{args.size}x{args.size}, towers randomly initialised (the cost does not depend on the weights). Step times: "
        f"median of {args.repeats} steps after one warm-up step, wall-clock and process CPU time (both threads; steadier "
        "on a shared machine). Memory: peak RSS (`ru_maxrss`) of a fresh subprocess per configuration, once the model, "
        "batch and optimizer are built and at the end; it includes the Python/PyTorch runtime. Trainable parameters "
        "as `requires_grad` (of all parameters, shared towers counted once). FineCLIPER star-dagger runs the vision "
        "tower three times (frames with the video adapters, parsing and landmark images with the face adapters) and "
        "carries a second text tower (Long-CLIP, 248 tokens).",
        "",
        f"Reproduce: `{command.strip()}`",
        "",
        header,
        *rows,
        "",
        *([f"Ratios: {'; '.join(ratios)}.", ""] if ratios else []),
        READING,
        END,
    ])
    update_section(args.results, BEGIN, END, section)


if __name__ == "__main__":
    main()

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
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
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


def build(name: str, frames: int, checkpoint_blocks: bool = False, arch: str | None = None) -> torch.nn.Module:
    """The configuration's model, from the ``stages`` package first on sys.path (this tree's, or --code's)."""
    from stages.train.models.dfer_clip import DferClip, DferClipConfig, read_descriptors
    from stages.train.models.fineclip import VARIANTS, FineClip, FineClipConfig
    from stages.train.models.towers import TowerConfig, build_clip

    descriptors = read_descriptors(DESCRIPTORS)
    classes = list(descriptors)[:7]
    arch = arch or CONFIGS[name][1]
    if name.startswith("full"):
        return DferClip(build_clip(TowerConfig(arch=arch, random_init=True)), classes, descriptors, DferClipConfig(), frames)
    long_clip = None
    if "text" in VARIANTS[name]:
        long_clip = build_clip(TowerConfig(arch=arch, random_init=True, context_length=248), seed=1)
    extra = {"checkpoint_blocks": True} if checkpoint_blocks else {}
    return FineClip(build_clip(TowerConfig(arch=arch, random_init=True)), classes, FineClipConfig(variant=name, **extra),
                    frames, long_clip)


def matmul_flops(size: int = 1024, seconds: float = 2.0) -> float:
    """This process's float32 matmul rate (FLOP/s): square ``size`` products for about ``seconds``."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        n += 1
    return 2 * size ** 3 * n / (time.perf_counter() - started)


def worker(args) -> dict:
    """Build one configuration, take 1 + repeats steps, report per-step times (after the warm-up) and memory."""
    sys.path.insert(0, str(args.code))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.worker, args.frames, args.checkpoint_blocks, args.arch).train()
    shape = (args.batch, args.frames, 3, args.size, args.size)
    batch = {"frames": torch.rand(shape), "parsing": torch.rand(shape), "landmarks": torch.rand(shape),
             "caption": [CAPTION] * args.batch, "label": torch.randint(0, 7, (args.batch,))}
    optimizer = torch.optim.SGD(model.param_groups(1e-3), lr=1e-3, momentum=0.9)
    built = peak_rss_mb()
    wall, cpu, matmul = [], [], []

    def step() -> None:
        loss = model.loss(model(batch), batch["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(1 + args.repeats):  # one warm-up step, then the timed ones
        if i:
            matmul.append(matmul_flops())  # the machine's rate right before each timed step: same load
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    peak = peak_rss_mb()
    # FLOPs are counted last, in a step of their own: under FlopCounterMode, torch.utils.checkpoint keeps every
    # activation (checkpoint_blocks measured no memory saving while the counted step came first).
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()),
            "wall": statistics.median(wall[1:]), "cpu": statistics.median(cpu[1:]), "warmup": wall[0],
            "flops": counter.get_total_flops(), "matmul": statistics.median(matmul),
            "built_mb": built, "peak_mb": peak}


def machine() -> str:
    info = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if info.exists() else platform.processor()
    return (f"{os.cpu_count()} CPU cores ({cpu}), no GPU, {torch.get_num_threads()} torch threads; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}; PyTorch {torch.__version__}")


def run_worker(name: str, code: Path, checkpoint_blocks: bool, args) -> dict:
    options = [f"--{key}={getattr(args, key)}" for key in ("batch", "frames", "size", "repeats", "threads")]
    options += [f"--code={code}"] + ["--checkpoint-blocks"] * checkpoint_blocks + [f"--arch={args.arch}"] * bool(args.arch)
    run = subprocess.run([sys.executable, __file__, "--worker", name, *options], check=True, stdout=subprocess.PIPE,
                         text=True)
    return json.loads(run.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["full", "base", "star-dagger"])
    parser.add_argument("--batch", type=int, default=1, help="clips per step")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=224, help="frame width and height")
    parser.add_argument("--repeats", type=int, default=1, help="timed steps after one warm-up step")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all configurations, interleaved")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--arch", help="one tower for every configuration (e.g. ViT-B-32 on a busy CPU)")
    parser.add_argument("--before", type=Path, help="a checkout of the code before (git worktree): its FineCLIPER "
                        "configurations run too, interleaved with this tree's")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-blocks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    runs = []  # (row key, config name, code tree, checkpoint_blocks); full fine-tuning (DFER-CLIP) code is unchanged
    for name in CONFIGS:
        if name not in args.configs:
            continue
        if args.before and not name.startswith("full"):
            runs.append((f"{name}, before", name, args.before, False))
        runs.append((name, name, ROOT, False))
        if name == "base":
            runs.append((f"{name}, checkpoint_blocks", name, ROOT, True))
    samples, load, started = {key: [] for key, *_ in runs}, [os.getloadavg()[0]], time.perf_counter()
    for _ in range(args.rounds):  # interleaved: every configuration sees the same spells of load
        for key, name, code, checkpoint_blocks in runs:
            samples[key].append(run_worker(name, code, checkpoint_blocks, args))
            load.append(os.getloadavg()[0])
            print(f"{key}: {samples[key][-1]['wall']:.1f} s a step", file=sys.stderr, flush=True)
    minutes = (time.perf_counter() - started) / 60
    results = {key: {field: (statistics.median(s[field] for s in runs_of) if field in ("wall", "cpu", "matmul")
                             else max(s[field] for s in runs_of)) for field in runs_of[0]}
               for key, runs_of in samples.items()}

    ref = results.get("full") or results[runs[0][0]]
    header = ("| configuration | code | tower | trainable params (M) | step wall (s) | step CPU (s) | peak RSS (MB) "
              "| GFLOP per step | achieved GFLOP/s | matmul GFLOP/s | achieved / matmul | wall / full | peak RSS / full |\n"
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for key, name, code, checkpoint_blocks in runs:
        r, (label, arch) = results[key], CONFIGS[name]
        arch = args.arch or arch
        achieved = r["flops"] / r["wall"]
        rows.append(f"| {label}{' + checkpoint_blocks' if checkpoint_blocks else ''} | "
                    f"{'before' if code == args.before else 'after'} | {arch} | {r['trainable'] / 1e6:.2f} of "
                    f"{r['total'] / 1e6:.0f} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak_mb']:.0f} | {r['flops'] / 1e9:.0f} "
                    f"| {achieved / 1e9:.1f} | {r['matmul'] / 1e9:.1f} | {achieved / r['matmul']:.0%} "
                    f"| {r['wall'] / ref['wall']:.2f}x | {r['peak_mb'] / ref['peak_mb']:.2f}x |")
    print(header, *rows, sep="\n")
    if args.no_write:
        return
    command = "python benchmarks/train_step.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        BEGIN,
        "## Training step: adapters vs full fine-tuning, CPU (`benchmarks/train_step.py`)",
        "",
        f"Machine: {machine()}; shared with other jobs: 1-minute load average {min(load):.1f}-{max(load):.1f} during "
        f"the run ({minutes:.0f} minutes in all).",
        f"One step = forward + loss + backward + SGD step (momentum 0.9) on batch {args.batch} of {args.frames} frames at "
        f"{args.size}x{args.size}, towers randomly initialised (the cost does not depend on the weights). Every "
        f"configuration runs in a fresh subprocess, {args.rounds} rounds over all configurations in turn (interleaved, "
        f"so they share the load); per subprocess one warm-up step, {args.repeats} timed step(s), then peak RSS, then "
        "one step under `torch.utils.flop_counter.FlopCounterMode` for the FLOPs of forward + backward (last, since "
        "under that mode activation checkpointing keeps every activation); medians over the rounds. "
        "*matmul GFLOP/s* = float32 1024x1024 products measured in the same subprocess right before its timed step; "
        "*achieved* = counted FLOPs / step wall time. Peak RSS (`ru_maxrss`) includes the Python/PyTorch runtime "
        "(~0.4 GB) and the weights. *before* = the code at the branch point (`--before`, a git worktree of main), "
        "*after* = this tree.",
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

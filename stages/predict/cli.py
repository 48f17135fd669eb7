"""CLI: python -m stages.predict VIDEO_OR_FOLDER... --model results/{ds}/{fold}/{model} [--top K] [--json F] [--csv F]

Prints the top classes with their probabilities for every video file (mp4, avi, ...) or frame folder; a folder of
videos stands for the videos in it. No annotation list is needed. The clips go through the same frames, faces and
caption stages as the training data, with the settings of the run's config files (config/config.yaml, plus those
given with --configfile, as for the snakemake command that trained it). Run it from the workflow folder.
"""
from __future__ import annotations

import argparse
import csv
import sys
from typing import Sequence

from stages.common.errors import StageError
from stages.common.io import atomic_path, write_json
from stages.predict.pipeline import DESCRIPTORS, Clip, expand_inputs, load_run, predict_sources, top_classes


def records(clips: list[Clip], class_names: list[str], k: int) -> list[dict]:
    """One JSON-ready record per clip: the top ``k`` classes, every class's probability, or the error."""
    out = []
    for clip in clips:
        record = {"source": clip.source}
        if clip.probabilities is None:
            record["error"] = clip.error or f"{clip.source}: not predicted."
        else:
            top = top_classes(clip.probabilities, class_names, k)
            record.update(prediction=top[0][0], top=[{"class": name, "probability": p} for name, p in top],
                          probabilities=dict(zip(class_names, clip.probabilities)))
            if clip.caption is not None:
                record["caption"] = clip.caption
        if clip.notes:
            record["notes"] = clip.notes
        out.append(record)
    return out


def write_csv(path: str, rows: list[dict], class_names: list[str]) -> None:
    """source, prediction, probability, one column per class, error."""
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["source", "prediction", "probability", *class_names, "error"])
            for row in rows:
                probabilities = row.get("probabilities", {})
                writer.writerow([row["source"], row.get("prediction", ""),
                                 f"{row['top'][0]['probability']:.6f}" if "top" in row else "",
                                 *(f"{probabilities[c]:.6f}" if c in probabilities else "" for c in class_names),
                                 row.get("error", "")])


def summary_line(row: dict) -> str:
    if "error" in row:
        return f"{row['source']}: FAILED: {row['error']}"
    return f"{row['source']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER", help="video files or frame folders")
    parser.add_argument("--model", required=True,
                        help="a trained run: results/{ds}/{fold}/{model} (any variant, DFER-CLIP) or results/zeroshot/{src}")
    parser.add_argument("--configfile", nargs="*", default=[],
                        help="config files of the run after config/config.yaml (as given to snakemake)")
    parser.add_argument("--top", type=int, default=3, help="classes printed per clip (default 3)")
    parser.add_argument("--json", help="write every clip's result (all class probabilities) to this JSON file")
    parser.add_argument("--csv", help="write one row per clip to this CSV file")
    parser.add_argument("--classes", help="zero-shot models: comma-separated class names to score "
                        "(default: the classes of the dataset it was trained on)")
    parser.add_argument("--descriptors", default=DESCRIPTORS, help=f"DFER-CLIP's class descriptors (default {DESCRIPTORS})")
    parser.add_argument("--chunk", type=int, default=64, help="clips processed together (memory; default 64)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.top < 1 or args.chunk < 1:
        parser.error("--top and --chunk must be at least 1")

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    run = load_run(args.model, args.configfile, classes)
    clips = predict_sources(expand_inputs(args.inputs), run, args.chunk, args.descriptors, not args.no_progress)
    rows = records(clips, run.class_names, min(args.top, len(run.class_names)))
    if args.json:
        write_json(args.json, {"model": str(args.model), "class_names": run.class_names, "clips": rows})
    if args.csv:
        write_csv(args.csv, rows, run.class_names)
    for row in rows:
        print(summary_line(row), file=sys.stderr if "error" in row else sys.stdout)
    failed = sum("error" in row for row in rows)
    if failed == len(rows):
        raise StageError(f"no clip could be predicted ({failed} failed; reasons above).")
    if failed:
        print(f"{failed} of {len(rows)} clips failed (reasons above); the others were predicted.", file=sys.stderr)
        sys.exit(1)

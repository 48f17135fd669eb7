"""CLI of the review gate.

  python -m stages.review export --refined R.parquet --index I.parquet [--previous config/review/demo.csv] --out results/demo/review/sheet.csv
  python -m stages.review apply --refined R.parquet --sheet config/review/demo.csv --generated results/demo/review/sheet.csv --mode required --out results/demo/captions/approved.parquet
  python -m stages.review status demo [--results results] [--config config/config.yaml] [--review-dir config/review]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from stages.common.config import stage_section
from stages.common.errors import StageError, run_cli
from stages.common.io import read_made_with, read_parquet, write_parquet
from stages.common.schemas import APPROVED_SCHEMA, INDEX_SCHEMA, REFINED_SCHEMA
from stages.review.gate import MODES, apply, status
from stages.review.sheet import CHANGED_NOTE, export, read_sheet, write_sheet


def _export(args) -> None:
    refined = read_parquet(args.refined, REFINED_SCHEMA)
    index = read_parquet(args.index, INDEX_SCHEMA, columns=["clip_id", "class_name", "splits"])
    previous = read_sheet(args.previous) if args.previous and Path(args.previous).exists() else None
    sheet = export(refined, index, previous)
    write_sheet(sheet, args.out)
    pending = sheet["status"] == "pending"
    print(f"review sheet: {len(sheet)} rows, {(sheet['flags'] != '').sum()} flagged, {(~pending).sum()} decided, "
          f"{(pending & sheet['note'].str.startswith(CHANGED_NOTE)).sum()} back to pending after a caption change "
          f"-> {args.out}")


def _apply(args) -> None:
    refined = read_parquet(args.refined, REFINED_SCHEMA)
    approved, summary = apply(refined, args.sheet, args.mode, args.generated)
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_parquet(approved, args.out, APPROVED_SCHEMA, read_made_with(args.refined))
    print(f"{summary.line()} -> {args.out}")


def _status(args) -> None:
    section = review_section(args.config, args.dataset)
    print(status(args.dataset, args.results, args.review_dir or section["sheets"], section["mode"]))


def review_section(config_path: str, dataset: str) -> dict:
    """The review section of ``config_path`` for ``dataset`` (defaults, its settings file, its own overrides)."""
    try:
        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StageError(f"{config_path}: config not found; run from the project folder or pass --config.") from err
    if dataset not in config.get("datasets", {}):
        raise StageError(f"{config_path}: no dataset {dataset!r}; known: {', '.join(config.get('datasets', {}))}.")
    return stage_section(config, "review", dataset)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("export", help="write the review sheet, keeping earlier decisions")
    p.add_argument("--refined", required=True, help="results/<ds>/captions/refined.parquet")
    p.add_argument("--index", required=True, help="results/<ds>/index.parquet (labels and splits)")
    p.add_argument("--previous", help="human sheet whose decisions to keep (ignored if it does not exist)")
    p.add_argument("--out", required=True, help="results/<ds>/review/sheet.csv")
    p.set_defaults(run=_export)

    p = commands.add_parser("apply", help="write the approved captions from the human sheet")
    p.add_argument("--refined", required=True, help="results/<ds>/captions/refined.parquet")
    p.add_argument("--sheet", help="config/review/<ds>.csv (may not exist yet)")
    p.add_argument("--generated", help="results/<ds>/review/sheet.csv, named in messages")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--out", required=True, help="results/<ds>/captions/approved.parquet")
    p.set_defaults(run=_apply)

    p = commands.add_parser("status", help="show the review mode and what is still to review")
    p.add_argument("dataset")
    p.add_argument("--results", default="results")
    p.add_argument("--config", default="config/config.yaml", help="where review.mode and review.sheets are set")
    p.add_argument("--review-dir", help="folder of the human sheets (default: review.sheets of the config)")
    p.set_defaults(run=_status)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    run_cli(main)

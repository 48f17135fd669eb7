"""CLI: python -m stages.index --dataset-config config/datasets/dfew.yaml --out results/dfew/index.parquet"""
from __future__ import annotations

import argparse
import sys

from stages.common.config import config_object
from stages.common.datasets import load_dataset_config
from stages.common.errors import run_cli
from stages.common.io import atomic_path, write_parquet
from stages.common.schemas import INDEX_SCHEMA
from stages.index.stage import IndexResult, build_index, check_drop_fraction, problems_frame


def report(result: IndexResult) -> None:
    """Every dropped line, every corrected frame count and every folder with hidden files, on stderr (the log)."""
    for problem in result.problems:
        print(f"dropped {problem.file}:{problem.line}: {problem.reason}", file=sys.stderr)
    for r in result.recounts:
        print(f"recounted {r.clip_id}: {r.file}:{r.line} lists {r.listed} frames, the folder has {r.on_disk}",
              file=sys.stderr)
    for clip_id, names in result.hidden.items():
        print(f"ignored hidden files of {clip_id} (as DFER-CLIP's glob does): {', '.join(names[:5])}"
              + (f" and {len(names) - 5} more" if len(names) > 5 else ""), file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.index", description=__doc__)
    parser.add_argument("--dataset-config", required=True, help="config/datasets/<name>.yaml")
    parser.add_argument("--overrides-json", default="{}", help="keys that replace the file's (e.g. root)")
    parser.add_argument("--out", required=True, help="index Parquet to write")
    parser.add_argument("--dropped", required=True, nargs="+",
                        help="CSV file(s) listing unusable lines and clips with file, line and reason; written also "
                             "when too many clips are unusable (give a second path that survives a failed job)")
    args = parser.parse_args(argv)

    ds = load_dataset_config(args.dataset_config, config_object(args.overrides_json, "--overrides-json"))
    result = build_index(ds)
    report(result)
    for path in args.dropped:
        with atomic_path(path) as tmp:
            problems_frame(result.problems).to_csv(tmp, index=False)
    check_drop_fraction(result, ds, report=args.dropped[-1])
    write_parquet(result.table, args.out, INDEX_SCHEMA)
    recounted = ", ".join(r.clip_id for r in result.recounts[:5]) + (", ..." if len(result.recounts) > 5 else "")
    print(f"index {ds.name}: {result.kept} of {result.referenced} clips kept, {len(result.dropped_clips)} dropped "
          f"({len(result.problems)} problem lines, see {args.dropped[0]}); {len(result.recounts)} frame counts "
          f"corrected from disk{f' ({recounted})' if recounted else ''}; hidden files ignored in "
          f"{len(result.hidden)} clips -> {args.out}")


if __name__ == "__main__":
    run_cli(main)

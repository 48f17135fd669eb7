"""CLI: python -m stages.index --dataset-config config/datasets/dfew.yaml --out results/dfew/index.parquet"""
from __future__ import annotations

import argparse
import sys

from stages.common.config import config_object
from stages.common.datasets import load_dataset_config
from stages.common.errors import run_cli
from stages.common.io import atomic_path, write_parquet
from stages.common.schemas import INDEX_SCHEMA
from stages.index.stage import build_index, check_drop_fraction, problems_frame


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.index", description=__doc__)
    parser.add_argument("--dataset-config", required=True, help="config/datasets/<name>.yaml")
    parser.add_argument("--overrides-json", default="{}", help="keys that replace the file's (e.g. root)")
    parser.add_argument("--out", required=True, help="index Parquet to write")
    parser.add_argument("--dropped", required=True, help="CSV listing unusable clips with file, line and reason")
    args = parser.parse_args(argv)

    ds = load_dataset_config(args.dataset_config, config_object(args.overrides_json, "--overrides-json"))
    result = build_index(ds)
    for problem in result.problems:
        print(f"dropped {problem.file}:{problem.line}: {problem.reason}", file=sys.stderr)
    check_drop_fraction(result, ds)
    with atomic_path(args.dropped) as tmp:
        problems_frame(result.problems).to_csv(tmp, index=False)
    write_parquet(result.table, args.out, INDEX_SCHEMA)
    print(f"index {ds.name}: {result.table.num_rows} clips kept, {len(result.problems)} dropped "
          f"(see {args.dropped}), {result.recounted} frame counts corrected from disk -> {args.out}")


if __name__ == "__main__":
    run_cli(main)

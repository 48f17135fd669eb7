"""CLI: python -m stages.captions --faces F --frames FR --index I --prompt P --config-json '{...}' --out O"""
from __future__ import annotations

import argparse
from collections import Counter

from stages.captions.stage import CaptionsConfig, run
from stages.common.config import config_object
from stages.common.errors import run_cli
from stages.common.io import read_made_with, write_parquet
from stages.common.provenance import stage_record
from stages.common.schemas import CAPTIONS_RAW_SCHEMA


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.captions", description=__doc__)
    parser.add_argument("--faces", required=True, help="faces shard (landmark tracks)")
    parser.add_argument("--frames", required=True, help="frames shard of the same clips (source paths)")
    parser.add_argument("--index", required=True, help="dataset index (class names)")
    parser.add_argument("--prompt", required=True, help="the backend's prompt: Video-LLaVA prompt with a {label} slot, or the landmark-motion phrasebook")
    parser.add_argument("--config-json", default="{}", help="the captions section of config.yaml")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    section = config_object(args.config_json)
    config = CaptionsConfig.from_dict(section)
    table = run(args.faces, args.frames, args.index, args.prompt, config)
    made_with = {**read_made_with(args.faces), **stage_record("captions", section, {"prompt": args.prompt})}
    write_parquet(table, args.out, CAPTIONS_RAW_SCHEMA, made_with)
    statuses = Counter(s.split(":")[0] for s in table.column("status").to_pylist())
    print(f"captions ({config.backend}, label_hint={config.label_hint}): {table.num_rows} clips, "
          + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + f" -> {args.out}")


if __name__ == "__main__":
    run_cli(main)

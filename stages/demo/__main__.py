"""CLI: python -m stages.demo --config-json '{"seed": 0}' --out-dir results/demo/source"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from stages.common.errors import StageError, run_cli
from stages.demo.generate import generate, parse_config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", default="{}", help="the config's `demo` section as one JSON object")
    parser.add_argument("--out-dir", required=True, help="replaced as a whole: clips/, lists/, manifest.json")
    args = parser.parse_args(argv)
    try:
        raw = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        raise StageError(f"--config-json is not valid JSON ({err})") from err
    manifest = generate(parse_config(raw), args.out_dir)
    print(f"demo: {sum(manifest['counts_per_class'].values())} clips in {manifest['generation_seconds']} s -> {args.out_dir}")


if __name__ == "__main__":
    run_cli(main)

"""CLI: python -m stages.demo --config-json '{"seed": 0}' --out-dir results/demo/source"""
from __future__ import annotations

import argparse
from typing import Sequence

from stages.common.config import config_object
from stages.common.errors import run_cli
from stages.demo.generate import generate, parse_config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", default="{}", help="the config's `demo` section as one JSON object")
    parser.add_argument("--out-dir", required=True, help="replaced as a whole: clips/, lists/, manifest.json")
    args = parser.parse_args(argv)
    manifest = generate(parse_config(config_object(args.config_json)), args.out_dir)
    print(f"demo: {sum(manifest['counts_per_class'].values())} clips in {manifest['generation_seconds']} s -> {args.out_dir}")


if __name__ == "__main__":
    run_cli(main)

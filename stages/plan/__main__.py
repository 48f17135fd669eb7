"""Show what a run would execute and why, naming every changed setting:

  python -m stages.plan [SNAKEMAKE ARGUMENTS ...]      e.g.  python -m stages.plan results/dfew/summary.md

runs ``snakemake --dry-run`` with the arguments and prints one line per planned job with its reason. Where the
reason is a params change, Snakemake shows two long JSON values; this names the settings that differ instead
(``train.epochs: 30 -> 40``, ``code.refine: "4c1d..." -> "9a0e..."``, ``weights.clip: ...``).
"""
from __future__ import annotations

import subprocess
import sys

from stages.common.errors import run_cli
from stages.plan.reasons import describe


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    snakemake = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", *args]
    proc = subprocess.run(snakemake, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.stderr.write(text)
        sys.exit(proc.returncode)
    print(describe(text))


if __name__ == "__main__":
    run_cli(main)

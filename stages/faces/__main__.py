from stages.common.errors import run_cli
from stages.faces.cli import main

run_cli(main)

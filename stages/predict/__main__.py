from stages.common.errors import run_cli
from stages.predict.cli import main

run_cli(main)

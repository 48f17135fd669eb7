from stages.common.errors import run_cli
from stages.frames.stage import main

run_cli(main)

from stages.common.errors import run_cli
from stages.features.stage import main

run_cli(main)

"""One exception type for problems a user can fix, and a CLI wrapper that prints them without a traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class StageError(Exception):
    """A problem with the user's input or setup; the message names the file and what to do."""


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's ``main``; turn a :class:`StageError` into a one-paragraph message and exit code 2."""
    try:
        main(argv)
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

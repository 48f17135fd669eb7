"""Each benchmark owns one section of benchmarks/RESULTS.md, between its begin/end markers."""
from __future__ import annotations

import re
from pathlib import Path


def update_section(results: Path, begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` (markers included in ``section``), or append it."""
    old = results.read_text() if results.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: section, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + section
    results.write_text(new + ("" if new.endswith("\n") else "\n"))
    print(f"updated {results}")

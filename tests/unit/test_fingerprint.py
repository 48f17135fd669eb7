"""Code fingerprints follow meaning: comments, docstrings and formatting do not change them; code does."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.common.fingerprint import code_fingerprint

STAGE = '''"""A stage."""
from stages.common.helper import twice


def run(x):
    """Doubles x."""
    return twice(x)
'''
HELPER = '''def twice(x):
    return 2 * x
'''


@pytest.fixture
def root(tmp_path) -> Path:
    for path, text in {"stages/demo_stage/__init__.py": STAGE, "stages/common/helper.py": HELPER,
                       "stages/common/unused.py": "X = 1\n"}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def fingerprint(root: Path) -> str:
    return code_fingerprint(root, ("demo_stage",))


def edit(file: Path, old: str, new: str) -> None:
    assert old in file.read_text()
    file.write_text(file.read_text().replace(old, new))


@pytest.mark.parametrize("path, old, new", [
    ("stages/demo_stage/__init__.py", '"""Doubles x."""', '"""Returns x times two."""'),
    ("stages/demo_stage/__init__.py", '"""A stage."""\n', ""),
    ("stages/demo_stage/__init__.py", "return twice(x)", "return twice(x)  # the helper does it"),
    ("stages/demo_stage/__init__.py", "def run(x):", "def run(\n    x,\n):"),
    ("stages/common/helper.py", "def twice", "# shared\n\n\ndef twice"),
    ("stages/common/unused.py", "X = 1", "X = 2"),  # not imported by the stage
])
def test_comments_docstrings_formatting_and_unimported_code_do_not_count(root, path, old, new):
    before = fingerprint(root)
    edit(root / path, old, new)
    assert fingerprint(root) == before


@pytest.mark.parametrize("path, old, new", [
    ("stages/demo_stage/__init__.py", "return twice(x)", "return twice(x) + 1"),
    ("stages/common/helper.py", "2 * x", "3 * x"),  # imported by the stage
    ("stages/demo_stage/__init__.py", '"""Doubles x."""', '"""Doubles x."""\n    x = abs(x)'),
])
def test_code_changes_count(root, path, old, new):
    before = fingerprint(root)
    edit(root / path, old, new)
    assert fingerprint(root) != before

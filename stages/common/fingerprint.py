"""Fingerprint of a stage's source code: its package plus every ``stages`` module it imports, transitively.

Snakemake reruns a rule when this changes, so editing a stage's code reruns that stage (and what follows),
while editing a module it never imports does not.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def _module_files(root: Path, module: str) -> list[Path]:
    """Source files of a dotted ``stages`` module: a package's files or one module file."""
    path = root.joinpath(*module.split("."))
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    file = path.with_suffix(".py")
    return [file] if file.exists() else []


def _imported_modules(file: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stages":
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.split(".")[0] == "stages")
    return modules


def source_files(root: str | Path, packages: tuple[str, ...]) -> list[Path]:
    """Every file of ``stages.<package>`` and of the ``stages`` modules they import, transitively."""
    root = Path(root)
    todo = [f"stages.{package}" for package in packages]
    seen_modules, files = set(), set()
    while todo:
        module = todo.pop()
        if module in seen_modules:
            continue
        seen_modules.add(module)
        for file in _module_files(root, module):
            if file not in files:
                files.add(file)
                todo.extend(_imported_modules(file))
    return sorted(files)


def code_fingerprint(root: str | Path, packages: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for file in source_files(root, packages):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]

"""Fingerprint of a stage's source code: its package plus every ``stages`` module it imports, transitively.

Snakemake reruns a rule when this changes, so editing a stage's code reruns that stage (and what follows),
while editing a module it never imports does not. The fingerprint is taken over each module's syntax tree
with docstrings removed, so comments, docstrings, blank lines and formatting do not rerun anything; a new
Python version (whose syntax trees may print differently) may.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _module_files(root: Path, module: str) -> list[Path]:
    """Source files of a dotted ``stages`` module: a package's files or one module file."""
    path = root.joinpath(*module.split("."))
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    file = path.with_suffix(".py")
    return [file] if file.exists() else []


def _imported_modules(tree: ast.Module) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stages":
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.split(".")[0] == "stages")
    return modules


def _parse(file: Path) -> ast.Module:
    return ast.parse(file.read_text(encoding="utf-8"), filename=str(file))


def meaning(tree: ast.Module) -> str:
    """The syntax tree as text, without docstrings (comments and formatting are never part of it)."""
    for node in ast.walk(tree):
        if isinstance(node, _WITH_DOCSTRING) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _sources(root: Path, packages: tuple[str, ...]) -> dict[Path, ast.Module]:
    """Every file of ``stages.<package>`` and of the ``stages`` modules they import, transitively, parsed."""
    todo = [f"stages.{package}" for package in packages]
    seen_modules, trees = set(), {}
    while todo:
        module = todo.pop()
        if module in seen_modules:
            continue
        seen_modules.add(module)
        for file in _module_files(root, module):
            if file not in trees:
                trees[file] = _parse(file)
                todo.extend(_imported_modules(trees[file]))
    return trees


def code_fingerprint(root: str | Path, packages: tuple[str, ...]) -> str:
    root = Path(root)
    trees = _sources(root, packages)
    digest = hashlib.sha256()
    for file in sorted(trees):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(meaning(trees[file]).encode())
    return digest.hexdigest()[:16]

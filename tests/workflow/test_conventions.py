"""Snakemake conventions: conda envs pinned like pyproject and covering what each rule imports, lint-clean rules,
a docstring per rule, snakefmt-formatted Snakefile and rules."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.workflow.conftest import REPO, snakemake

ENVS = sorted((REPO / "envs").glob("*.yaml"))
# Modules whose distribution importlib.metadata cannot name (the wheel does not list the package folder).
MODULE_DISTRIBUTIONS = {"dlib": "dlib-bin"}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_pins() -> dict[str, str]:
    pins = {}
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = str(req.specifier)
    return pins


def env_requirements(path: Path) -> tuple[str, list[Requirement]]:
    """(the python spec, the pip requirements) of a conda environment file."""
    deps = yaml.safe_load(path.read_text())["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return python, [Requirement(line) for line in pip]


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, from every .smk file and the Snakefile."""
    blocks = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]
    return blocks


def module_files(module: str) -> list[Path]:
    """The files Python runs to import ``module`` from the repository: its parents' __init__.py and itself."""
    parts = module.split(".")
    files = [REPO / Path(*parts[:k]) / "__init__.py" for k in range(1, len(parts))]
    base = REPO / Path(*parts)
    files += [base.with_suffix(".py"), base / "__init__.py"]
    return [f for f in files if f.is_file()]


def imported_modules(source: Path) -> set[str]:
    """Absolute imports anywhere in the file (including those inside functions); ``from a import b`` gives a and a.b."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def third_party_imports(entry_module: str) -> set[str]:
    """Top-level third-party modules that running ``python -m entry_module`` may import (stages modules followed)."""
    seen, found, todo = set(), set(), [entry_module, f"{entry_module}.__main__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for source in module_files(module):
            for name in imported_modules(source):
                top = name.split(".")[0]
                if top == "stages":
                    todo.append(name)
                elif top not in sys.stdlib_module_names:
                    found.add(top)
    return found


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str | None:
    """The installed distribution providing ``module``; None for optional modules not installed here."""
    if module in MODULE_DISTRIBUTIONS:
        return MODULE_DISTRIBUTIONS[module]
    names = installed_distributions().get(module)
    return canonicalize_name(names[0]) if names else None


def test_env_files_exist_and_pin_exactly_what_pyproject_pins():
    assert ENVS, "envs/*.yaml are missing"
    pins = pyproject_pins()
    requires_python = SpecifierSet(pyproject()["project"]["requires-python"])
    for env in ENVS:
        python, requirements = env_requirements(env)
        version = python.split("=")[-1]
        assert requires_python.contains(f"{version}.0"), f"{env.name}: {python} does not satisfy {requires_python}"
        for req in requirements:
            name = canonicalize_name(req.name)
            assert name in pins, f"{env.name}: {req.name} is not a dependency in pyproject.toml"
            assert str(req.specifier) == pins[name] and pins[name].startswith("=="), \
                f"{env.name}: {req} but pyproject.toml pins {req.name}{pins[name]}"


def test_every_rule_has_a_conda_env_that_provides_what_its_stage_imports():
    envs = {env.name: {canonicalize_name(r.name) for r in env_requirements(env)[1]} for env in ENVS}
    for rule, text in rule_blocks().items():
        if "shell:" not in text:
            continue  # aggregate rules (all) run nothing
        conda = re.search(r'conda:\s*\n\s*"\.\./envs/([\w-]+\.yaml)"', text)
        assert conda and conda.group(1) in envs, f"rule {rule}: needs `conda: \"../envs/<name>.yaml\"` ({list(envs)})"
        for stage in set(re.findall(r"-m stages\.(\w+)", text)):
            needed = {distribution_of(m) for m in third_party_imports(f"stages.{stage}")} - {None}
            missing = needed - envs[conda.group(1)]
            assert not missing, f"rule {rule} runs stages.{stage}, which imports {sorted(missing)}: " \
                                f"add them to envs/{conda.group(1)} (pinned as in pyproject.toml)"


def test_snakemake_lint_is_clean():
    out = snakemake(REPO, "--lint", check=False, configfile=None)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-6000:]


def test_every_rule_explains_itself_in_list_rules():
    out = snakemake(REPO, "--list-rules", configfile=None).stdout
    entries = dict(re.findall(r"^(\w+)(?: \((.*)\))?$", out, flags=re.M))
    assert set(rule_blocks()) == set(entries)
    undocumented = [name for name, doc in entries.items() if not doc.strip()]
    assert not undocumented, f"rules without a docstring: {undocumented}"


def test_snakefile_and_rules_are_snakefmt_formatted():
    """snakefmt with pyproject's [tool.snakefmt] settings would change nothing (run `snakefmt Snakefile rules`)."""
    snakefmt = Path(sys.executable).parent / "snakefmt"
    out = subprocess.run([str(snakefmt), "--check", "--diff", "Snakefile", "rules"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, f"run `snakefmt Snakefile rules`:\n{out.stdout[-4000:]}{out.stderr[-2000:]}"

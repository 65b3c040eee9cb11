"""The library never imports the command line: ``lightning_local.cli`` sits on top, nothing below reaches up.

Every ``.py`` file of the installed packages except the CLI's own (``lightning_local/`` and the repository's
``plugins/``, installed as ``lightning_local.plugins``; see ``package-dir`` in pyproject.toml) is parsed with
``ast``: absolute imports, relative ones resolved against the file's package, imports inside functions, and
``importlib.import_module``/``__import__`` of a constant name. Naming the CLI's module in a string (a
subprocess command line such as ``python -m lightning_local.cli.main``) is not an import and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = "lightning_local.cli"
# folder of the repository -> the package it installs as (pyproject.toml, [tool.setuptools] package-dir)
PACKAGES = {"lightning_local": "lightning_local", "plugins": "lightning_local.plugins"}


def module_name(path: Path, folder: str) -> str:
    """The dotted name ``path`` (a file under the repository's ``folder``) is installed as."""
    parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[folder], *parts])


def _relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The absolute names one AST node imports (a ``from X import y`` yields ``X`` and ``X.y``: y may be a module)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        source = (node.module or "") if node.level == 0 else _relative(module, is_package, node.level, node.module)
        yield source
        yield from (f"{source}.{alias.name}" for alias in node.names)
    elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if function in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            yield node.args[0].value


def cli_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported name)`` of every import of :data:`CLI` (or below it) in ``source``, the text of ``module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for name in _imported(node, module, is_package):
            if name == CLI or name.startswith(CLI + "."):
                found.append((node.lineno, name))
                break
    return sorted(found)


def library_files() -> Iterator[tuple[Path, str]]:
    """Every ``.py`` file of the packages below the CLI, with its installed module name."""
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, module_name(path, folder)


def test_no_library_module_imports_the_cli():
    offenders = [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path, module in library_files()
        for line, name in cli_imports(path.read_text(), module, path.name == "__init__.py")
    ]
    assert not offenders, "the library imports the command line (pass what it needs in instead):\n" + "\n".join(offenders)


def test_the_scan_covers_the_library_and_the_plugins():
    modules = {module for _, module in library_files()}
    assert {"lightning_local", "lightning_local.benchmark.spec", "lightning_local.plugins.bptt"} <= modules
    assert not any(module.startswith(CLI) for module in modules)


@pytest.mark.parametrize("source, module, is_package, found", [
    ("import lightning_local.cli.main", "lightning_local.runs", False, [(1, "lightning_local.cli.main")]),
    ("from lightning_local.cli.resolve import ConfigError", "lightning_local.runs", False,
     [(1, "lightning_local.cli.resolve")]),
    ("from lightning_local import cli", "lightning_local.runs", False, [(1, "lightning_local.cli")]),
    ("def check():\n    from ..cli.resolve import resolve_config\n", "lightning_local.benchmark.spec", False,
     [(2, "lightning_local.cli.resolve")]),
    ("from .. import cli", "lightning_local.benchmark", True, [(1, "lightning_local.cli")]),
    ("from . import cli", "lightning_local.plugins.bptt", False, []),  # lightning_local.plugins.cli
    ("from .cli import x", "lightning_local", True, [(1, "lightning_local.cli")]),
    ("import importlib\nimportlib.import_module('lightning_local.cli.tune')", "lightning_local.runs", False,
     [(2, "lightning_local.cli.tune")]),
    ("from lightning_local.client import x\nimport lightning_local.cli_tools", "lightning_local.runs", False, []),
    ("cmd = ['python', '-m', 'lightning_local.cli.main', 'fit']", "lightning_local.tuning.trial", False, []),
])
def test_the_scan_finds_absolute_relative_and_late_imports(source, module, is_package, found):
    assert cli_imports(source, module, is_package) == found

"""Throw-away third-party packages for the plugin tests: one module, one entry point, installed into a folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def install_package(tmp_path: Path, package: str, source_code: str, group: str, name: str, attr: str) -> Path:
    """Build ``package`` (its ``__init__.py`` is ``source_code``) registering ``package:attr`` as ``name`` in the
    entry-point ``group``, install it with pip into ``tmp_path/site`` and return that folder (for PYTHONPATH)."""
    source = tmp_path / f"{package}_source"
    (source / package).mkdir(parents=True)
    (source / package / "__init__.py").write_text(source_code)
    (source / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{package.replace("_", "-")}"
        version = "0.0.1"
        [project.entry-points."{group}"]
        {name} = "{package}:{attr}"
        [tool.setuptools]
        packages = ["{package}"]
    '''))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True)
    return target

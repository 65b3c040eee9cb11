"""The complete config of a ``lightning-local`` command line, resolved in-process without running it."""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import yaml


class ConfigError(ValueError):
    """A command line whose config does not parse or is invalid: the CLI's own one-line message."""


def resolve_config(subcommand: str, args: Sequence[str]) -> dict:
    """What ``lightning-local SUBCOMMAND ARGS --print_config`` prints, as a dict; :class:`ConfigError` if it fails."""
    from .main import USER_ERRORS, build_cli

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv[:]
    sys.argv[1:] = []  # LightningCLI warns when it gets both args and a command line
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            build_cli([subcommand, *args, "--print_config"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            lines = [line.strip() for line in err.getvalue().splitlines() if "error:" in line]
            message = lines[-1].split("error:", 1)[1].strip() if lines else err.getvalue().strip()[-300:]
            raise ConfigError(message) from None
    except USER_ERRORS as error:
        raise ConfigError(str(error)) from None
    finally:
        sys.argv[:] = argv
    return yaml.safe_load(out.getvalue()) or {}


def validate_config(config: dict, subcommand: str) -> None:
    """Resolve ``config`` as ``lightning-local SUBCOMMAND --config FILE`` would; :class:`ConfigError` if it fails.

    The benchmark's config check (:func:`lightning_local.benchmark.spec.load_spec`'s ``validate``).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    try:
        resolve_config(subcommand, ["--config", handle.name])
    finally:
        Path(handle.name).unlink(missing_ok=True)

"""The command line before jsonargparse sees it, and its parse errors as one line.

Short names (``--learner eprop``, ``--data nmnist``) become class paths; the default data
module is put first; a jsonargparse error (several lines, usage, value dumps) becomes one
sentence.
"""

from __future__ import annotations

import re
from typing import NoReturn, Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser

from lightning_local.learners.registry import DATASET_GROUP, LEARNER_GROUP, class_path


class CommandLineError(ValueError):
    """The command line (or a config file) does not parse: unknown flag, bad value, missing argument."""


DEFAULT_LEARNER = "lightning_local.plugins.bptt.BPTT"
DEFAULT_DATA = "lightning_local.data.saccade_digits.SaccadeDigits"
SUBCOMMANDS = ("fit", "validate", "test", "predict")

# flag -> (entry-point group, what to call it in errors)
SHORT_NAME_FLAGS = {
    "--learner": (LEARNER_GROUP, "learner"),
    "--data": (DATASET_GROUP, "dataset"),
    # the data module wrapped by a wrapper such as the backdoor DataModule
    "--data.base": (DATASET_GROUP, "dataset"),
    "--data.init_args.base": (DATASET_GROUP, "dataset"),
}


def _expand(flag: str, value: str) -> str:
    """Map a registered short name (case-insensitive) to its class path; leave paths alone."""
    if "." in value or value.startswith(("{", "[")) or value.endswith((".yaml", ".yml", ".json")):
        return value
    group, kind = SHORT_NAME_FLAGS[flag]
    return class_path(group, value.lower(), kind)


def expand_short_names(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--learner eprop`` / ``--data=nmnist`` into jsonargparse class paths."""
    out: list[str] = []
    expect: Optional[str] = None
    for token in argv:
        if expect is not None:
            out.append(_expand(expect, token))
            expect = None
            continue
        flag, eq, value = token.partition("=")
        if flag in SHORT_NAME_FLAGS:
            if eq:
                out.append(f"{flag}={_expand(flag, value)}")
            else:
                out.append(token)
                expect = flag
            continue
        out.append(token)
    return out


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """Expand short names and put the default data module first after the subcommand.

    The default data module is given as the first ``--data`` of the command rather
    than as a parser default: jsonargparse carries a default's resolved arguments
    over to a class chosen later, so ``--data dvsgesture`` would inherit the default
    module's ``n_time_bins``/``downsample``/``batch_size`` instead of its own.
    """
    out = expand_short_names(argv)
    for index, token in enumerate(out):
        if token in SUBCOMMANDS:
            return out[: index + 1] + ["--data", DEFAULT_DATA] + out[index + 1 :]
        if not token.startswith("-"):
            break
    return out


_NOISE = ("Given value", "usage:", "Does not validate", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>")


def _one_line(message: str) -> str:
    """Condense a jsonargparse error (several lines, usage, value dumps) into one sentence."""
    raw = str(message)
    lines = [line.strip(" -") for line in raw.splitlines()]
    lines = [re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", line) for line in lines if line and not line.startswith(_NOISE)]
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    required = next((line for line in lines if "arguments are required:" in line), None)
    if key and required:
        flags = " and ".join(f"--{key.group(1)}.{name.strip().lstrip('-')}" for name in required.split(":", 1)[1].split(","))
        owner = re.search(r"class_path='([\w.]+)'", raw)
        of = f" by {owner.group(1).rsplit('.', 1)[-1]}" if owner else ""
        return f"{flags} is required{of}: pass {flags} VALUE."
    if key:
        detail = " ".join(lines[1:]).rstrip(".")
        return f"invalid value for --{key.group(1)}: {detail}; see `lightning-local fit --help`."
    text = " ".join(lines)
    return text[:400] + (" ..." if len(text) > 400 else "")


class OneLineArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose parse errors become one line, not a usage dump."""

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        raise CommandLineError(_one_line(message)) from ex

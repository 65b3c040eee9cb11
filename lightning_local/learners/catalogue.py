"""The README's table of learning rules, generated from what the installed learner classes declare.

    python -m lightning_local.learners.catalogue            # rewrite the block in README.md
    python -m lightning_local.learners.catalogue --check    # exit 1 when README.md's block is stale

One row per registered rule: its short name, the first line of its class docstring, its options
(``__init__`` arguments and defaults), whether it trains convolutional networks (``linear_only``)
and whether its memory is flat in T (``memory_constant_in_T``). The block stands between
``<!-- rules:start -->`` and ``<!-- rules:end -->``; nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from ..files import replace_marked_block
from .registry import LEARNER_GROUP, available, learner_class

START, END = "<!-- rules:start -->", "<!-- rules:end -->"


def rules_table() -> str:
    """The markdown table of every registered rule."""
    rows = ["| name | rule | options (default) | conv nets | memory flat in T |", "|---|---|---|---|---|"]
    for name in sorted(available(LEARNER_GROUP)):
        cls = learner_class(name)
        summary = inspect.cleandoc(cls.__doc__).splitlines()[0].replace("``", "`") if cls.__doc__ else "-"  # its own
        parameters = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        options = ", ".join(f"`{p.name}` ({p.default!r})" for p in parameters if p.default is not p.empty) or "-"
        rows.append(f"| `{name}` | {summary} | {options} | {'no' if cls.linear_only else 'yes'} | "
                    f"{'yes' if cls.memory_constant_in_T else 'no'} |")
    return "\n".join(rows)


def with_table(readme: str, table: str) -> str:
    """``readme`` with ``table`` between the markers (everything else unchanged)."""
    return replace_marked_block(readme, START, END, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[2] / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's table is stale")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    try:
        updated = with_table(readme, rules_table())
    except ValueError as error:
        print(f"lightning-local: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if updated != readme:
            print("lightning-local: error: README.md's rule table is stale: run python -m lightning_local.learners.catalogue",
                  file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())

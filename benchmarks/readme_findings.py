"""Copy the Findings section of a saved benchmark report into README.md, so the README never holds typed-in verdicts.

    python benchmarks/readme_findings.py [--report benchmarks/results/nmnist_small_ours/report.md] [--readme README.md]
    python benchmarks/readme_findings.py --check     # exit 1 when README.md differs from the report

The body of the report's ``## Findings`` section (the verdict rule, the statements and the table; written by
:func:`lightning_local.benchmark.findings.section`) replaces whatever stands between the README's markers
``<!-- findings:start -->`` and ``<!-- findings:end -->``. A missing marker or section is an error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning_local.files import replace_marked_block

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = REPO / "benchmarks" / "results" / "nmnist_small_ours" / "report.md"
START, END = "<!-- findings:start -->", "<!-- findings:end -->"
HEADING = "## Findings"


def findings_body(report: str) -> str:
    """The lines of the report's Findings section below its heading, up to the next ``## `` heading."""
    lines = report.splitlines()
    if HEADING not in lines:
        raise ValueError(f"the report has no '{HEADING}' section (regenerate it with --report-only)")
    start = lines.index(HEADING) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).strip()


def with_findings(readme: str, body: str) -> str:
    """``readme`` with ``body`` between the markers (everything else unchanged)."""
    return replace_marked_block(readme, START, END, body)


def main(argv: list[str] | None = None) -> int:
    """Fill (or with ``--check`` compare) the README's Findings block; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is stale")
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text()
        updated = with_findings(readme, findings_body(args.report.read_text()))
    except (OSError, ValueError) as error:
        print(f"readme_findings: error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if updated != readme:
            print(f"{args.readme} is stale: run python benchmarks/readme_findings.py --report {args.report}")
            return 1
        print(f"{args.readme} is up to date with {args.report}")
        return 0
    if updated != readme:
        args.readme.write_text(updated)
    print(f"{args.readme}: Findings copied from {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

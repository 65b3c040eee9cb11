"""CI runs exactly the README's set-up commands (the README says so)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readmes_set_up_commands():
    readme = (REPO / "README.md").read_text()
    commands = readme.split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    script = (REPO / ".ci" / "run").read_text().splitlines()
    ci = [line for line in script if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == commands
    assert commands[-1] == "python -m pytest -q -n logical --durations=15"

"""The README's rule table is generated from the registry: every installed rule has a row, and a stale table fails."""

from pathlib import Path

from lightning_local.learners import LEARNER_GROUP, available
from lightning_local.learners.catalogue import END, START, main, rules_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_table_has_a_row_per_registered_rule_with_its_declarations():
    rows = {line.split("|")[1].strip(): line for line in rules_table().splitlines()[2:]}
    assert set(rows) == {f"`{name}`" for name in available(LEARNER_GROUP)}
    assert rows["`ostl`"].endswith("| `reset` ('differentiable') | no | yes |")  # dense only, flat in T
    assert rows["`bptt`"].endswith("| - | yes | no |")


def test_the_repository_readme_holds_the_current_table():
    assert main(["--readme", str(README), "--check"]) == 0, "run python -m lightning_local.learners.catalogue"


def test_check_detects_a_stale_table_and_writing_fixes_it(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# R\n{START}\n| old |\n{END}\ntail\n")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    assert readme.read_text() == f"# R\n{START}\n{rules_table()}\n{END}\ntail\n"
    assert main(["--readme", str(readme), "--check"]) == 0
    readme.write_text("no markers")
    assert main(["--readme", str(readme)]) == 2
    assert capsys.readouterr().err.count("\n") <= 2

"""Code metrics before and after the synapse split (issue 10): lines, eq. 1 spellings, reaches into ``.weight``.

Counted over the Python files of ``lightning_local/``, ``plugins/`` and ``cli/``; "before"
is a commit (default 91e93f6, the last one before the split, read with ``git show``),
"after" the working tree (untracked files included).

* ``loc``: non-blank lines (comments and docstrings included).
* eq. 1 spellings: statements that compute the membrane update ``u = beta u + i - V_th s``,
  found with the AST as an assignment whose right-hand side names both ``beta`` and
  ``v_th`` (as a variable, an attribute or a keyword value) and subtracts - whatever the syntax
  (``params.beta * mem + syn - params.v_th * spk``, ``torch.add(syn, mem, alpha=beta).sub_(spk,
  alpha=v_th)``, ``tl.fma(mem, beta, syn) - v_th * spk``). Reported per enclosing function,
  PyTorch and Triton (``@triton.jit``) apart.
* weight reaches (``lightning_local/`` and ``plugins/`` only), in code with comments and
  strings removed: ``<...layer...>.weight`` (a layer's weight read directly), ``.recurrent_weight``,
  and - after the split, the synapse's own parameter handle - ``.synapse.weight`` / ``.recurrent.weight``.

    python benchmarks/code_metrics.py [--before 91e93f6] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_local", "plugins", "cli")
WEIGHT_PACKAGES = ("lightning_local", "plugins")
WEIGHT_PATTERNS = {
    "layer.weight": re.compile(r"\b\w*layers?\w*\s*(?:\[[^\]]*\])?\s*\.\s*weight\b"),
    ".recurrent_weight": re.compile(r"\.\s*recurrent_weight\b"),
    "synapse handle (.synapse.weight / .recurrent.weight)": re.compile(r"\.\s*(?:synapse|recurrent)\s*\.\s*weight\b"),
}


def sources(before: str | None) -> dict[str, str]:
    """``{path: text}`` of the counted Python files at commit ``before``, or in the working tree."""
    if before is None:
        return {str(p.relative_to(ROOT)): p.read_text() for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout  # noqa: E731
    paths = [p for p in git("ls-tree", "-r", "--name-only", before, "--", *PACKAGES).split() if p.endswith(".py")]
    return {p: git("show", f"{before}:{p}") for p in paths}


def code_only(text: str) -> str:
    """The source with comments and string literals (docstrings included) removed."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return tokenize.untokenize((t.type, t.string) for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING))


def names_in(node: ast.AST) -> set[str]:
    """Variable and attribute names used anywhere in ``node``."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def subtracts(node: ast.AST) -> bool:
    """``node`` contains a subtraction (``a - b``, ``x.sub(...)``, ``x.sub_(...)``): eq. 1's reset term."""
    return any(
        (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub))
        or (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in ("sub", "sub_"))
        for sub in ast.walk(node)
    )


def is_membrane_update(node: ast.AST) -> bool:
    """An assignment whose value combines ``beta`` and ``v_th`` with a subtraction (not a mere listing of constants)."""
    value = getattr(node, "value", None)
    return (
        isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and value is not None
        and {"beta", "v_th"} <= names_in(value) and subtracts(value)
    )


def eq1_spellings(path: str, text: str) -> list[dict]:
    """Every membrane-update statement of eq. 1 in a file, with its function and kind."""
    found = []

    def visit(node: ast.AST, scope: list[str], triton: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                jit = any("jit" in ast.unparse(d) for d in getattr(child, "decorator_list", []))
                visit(child, scope + [child.name], triton or jit)
            elif is_membrane_update(child):
                kind = "triton" if triton else "pytorch"
                found.append({"file": path, "function": ".".join(scope), "line": child.lineno, "kind": kind})
            else:
                visit(child, scope, triton)

    visit(ast.parse(text), [], False)
    return found


def measure(files: dict[str, str]) -> dict:
    non_blank = lambda text: sum(1 for line in text.splitlines() if line.strip())  # noqa: E731
    loc = {pkg: sum(non_blank(t) for p, t in files.items() if p.startswith(pkg + "/")) for pkg in PACKAGES}
    spellings = [s for p, t in files.items() for s in eq1_spellings(p, t)]
    weights = {}
    for name, pattern in WEIGHT_PATTERNS.items():
        hits = [(p, len(pattern.findall(code_only(t)))) for p, t in files.items() if p.split("/")[0] in WEIGHT_PACKAGES]
        weights[name] = {"total": sum(n for _, n in hits), "files": {p: n for p, n in hits if n}}
    return {
        "files": len(files),
        "loc_non_blank": {**loc, "total": sum(loc.values())},
        "eq1_spellings": {
            "pytorch": sorted({f"{s['file']}:{s['function']}" for s in spellings if s["kind"] == "pytorch"}),
            "triton": sorted({f"{s['file']}:{s['function']}" for s in spellings if s["kind"] == "triton"}),
            "statements": spellings,
        },
        "weight_reaches": weights,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="91e93f6", help="commit of the 'before' state")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    args = parser.parse_args()
    result = {
        "before": {"commit": args.before, **measure(sources(args.before))},
        "after": {"commit": "working tree", **measure(sources(None))},
    }
    for when in ("before", "after"):
        r = result[when]
        print(f"{when} ({r['commit']}): {r['files']} files, non-blank lines {r['loc_non_blank']}")
        for kind in ("pytorch", "triton"):
            places = r["eq1_spellings"][kind]
            print(f"  eq. 1 spelled out, {kind}: {len(places)} place(s): {', '.join(places)}")
        for name, hits in r["weight_reaches"].items():
            print(f"  {name}: {hits['total']} {hits['files']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

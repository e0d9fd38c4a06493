"""The house rules of the package, checked on its own source: imports flow one way down the
layers declared in pyproject.toml (import-linter), no import circles at any depth, no
`sdmtalk` import hidden inside a function, and rooms of a legible size."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sdmtalk"
SCRIPTS = [ROOT / d for d in ("benchmarks", "calibrate", "probes", "examples")]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _sources(*roots: Path) -> list[Path]:
    return sorted(p for r in roots if r.is_dir() for p in r.rglob("*.py"))


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's components of more than one module (import circles)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


def test_the_layers_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed: pip install -e '.[test]'")
    run = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_no_import_circles():
    graph = grimp.build_graph("sdmtalk")
    circles = _strongly_connected(graph)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in circles)


def _function_local_imports(path: Path) -> list[str]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                names = []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if node.level == 0 else ["(relative)"]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                if any(n == "sdmtalk" or n.startswith(("sdmtalk.", "(relative)")) for n in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} in {fn.name}()")
    return found


def test_no_sdmtalk_import_inside_a_function():
    """Function-local imports are for heavy or optional third-party packages only; an
    sdmtalk import inside a function is how a circle hides (docs/ARCHITECTURE.md)."""
    found = [hit for p in _sources(PACKAGE) for hit in _function_local_imports(p)]
    assert not found, "\n".join(found)


def test_no_module_over_500_lines_and_no_function_over_60():
    long_modules, long_functions = [], []
    for path in _sources(PACKAGE, *SCRIPTS):
        text = path.read_text(encoding="utf-8")
        if path.is_relative_to(PACKAGE) and text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = fn.end_lineno - fn.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {length} lines")
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)

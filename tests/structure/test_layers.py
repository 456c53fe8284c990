"""The package's structure: layers point down, one word per idea, every command group listed.

These read the source tree (no database): import cycles, imports hidden in functions, packages a
letter apart, the table registry of ``stacube db migrate`` and the command groups' help.
"""

from __future__ import annotations

import ast
import difflib
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stacube_testing import ROOT

TREES = {"stacube": ROOT / "src" / "stacube", "stacube_services": ROOT / "services" / "stacube_services",
         "lambdas": ROOT / "lambdas"}
GROUPS = ("product", "dataset", "composite", "job", "process", "key", "workspace", "cube", "db", "plot", "tiles", "timeseries", "up")


def _modules() -> dict[str, Path]:
    out = {}
    for package, base in TREES.items():
        for f in base.rglob("*.py"):
            parts = [package, *f.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(tree: ast.AST, modules: dict) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for candidate in (node.module, *(f"{node.module}.{a.name}" for a in node.names)):
                if candidate in modules:
                    found.add(candidate)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(ast.parse(f.read_text()), modules) - {m} for m, f in modules.items()}
    # Tarjan's strongly connected components
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_own_imports_are_at_module_level_unless_marked_lazy():
    """Imports of the package's own modules inside functions hide the structure; the few kept
    for a start-up or cold-start budget say so (``# lazy: <why>``)."""
    hidden = []
    for name, f in _modules().items():
        lines = f.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if (isinstance(sub, ast.ImportFrom) and sub.module
                            and sub.module.split(".")[0] in TREES and "lazy:" not in lines[sub.lineno - 1]):
                        hidden.append(f"{name}:{sub.lineno} {sub.module}")
    assert not hidden, hidden


def test_no_two_packages_a_letter_apart():
    packages = sorted({p.name for base in TREES.values() for p in base.rglob("*") if p.is_dir()
                       and (p / "__init__.py").exists() or p.is_dir() and any(p.glob("*.py"))} - {"__pycache__"})
    close = [(a, b) for i, a in enumerate(packages) for b in packages[i + 1:]
             if difflib.SequenceMatcher(a=a, b=b).ratio() > 0.85 and abs(len(a) - len(b)) <= 1]
    assert not close, close


def test_database_tables_are_registered_by_their_packages():
    """``stacube db migrate`` runs the table definitions packages register (entry points), so
    the database layer imports none of them."""
    names = {e.name: e.value for e in entry_points(group="stacube.tables")}
    assert names == {"access": "stacube.access.workspaces:TABLES", "cubes": "stacube.cubes.records:TABLES",
                     "jobs": "stacube.jobs.state:TABLES"}
    migrate = (TREES["stacube"] / "db" / "migrate.py").read_text()
    assert not re.search(r"from stacube\.(jobs|cubes|access)", migrate)


def test_the_job_engine_knows_nothing_of_workspaces():
    for f in (TREES["stacube"] / "jobs").glob("*.py"):
        text = f.read_text()
        assert "stacube.access" not in text, f.name


def test_kernels_do_not_import_jobs_or_cubes():
    for f in (TREES["stacube"] / "algo").glob("*.py"):
        assert not re.search(r"from stacube\.(jobs|cubes|access|catalog\.pgstac)", f.read_text()), f.name
    for f in (TREES["stacube"] / "core").glob("*.py"):
        assert not re.search(r"from stacube\.(?!core|errors)", f.read_text()), f.name


def test_command_groups_follow_one_rule_and_list_all_their_commands():
    import typer

    from stacube.cli.main import app

    command = typer.main.get_command(app)
    assert set(command.commands) == set(GROUPS)
    runner = CliRunner()
    for name, group in command.commands.items():
        subcommands = getattr(group, "commands", None)
        if not subcommands:
            continue
        out = runner.invoke(app, [name, "--help"], terminal_width=200).output
        for sub in subcommands:
            assert re.search(rf"\b{sub}\b", out), (name, sub)
        # a help text that enumerates commands names them all
        summary = (group.help or "").split(":", 1)
        if len(summary) == 2:
            listed = {w.strip(" .").split(" (")[0] for w in summary[1].split(",")}
            assert listed == set(subcommands), (name, listed, set(subcommands))


@pytest.mark.parametrize("word", ["cubes create", "keys create", "jobs list", "--cube "])
def test_the_old_tenant_words_are_gone_from_the_docs(word):
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert f"stacube {word}" not in doc.read_text() and f" {word}" not in doc.read_text(), (doc.name, word)


def test_a_composite_job_starts_without_the_libraries_it_does_not_use():
    """``stacube composite`` imports neither xarray (and pandas) nor rio-tiler before its first
    read: the start-up budget; process jobs and tile pyramids import them when they need them."""
    import subprocess
    import sys

    script = ("import sys\n"
              "import stacube.cli.main, stacube.cli.composite, stacube.jobs.runner, stacube.jobs.tasks\n"
              "print(sorted(m for m in ('xarray', 'pandas', 'rio_tiler', 'odc.stac') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"

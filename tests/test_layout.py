"""The tree shows the architecture: each subpackage of server/ imports only the subpackages its
docstring allows, so "where does this rule live?" has one answer and no cycle sneaks in."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server"
# What each subpackage may import of ours (runtime wires everything).
ALLOWED: dict[str, set[str]] = {
    "assets": set(),
    "core": {"core"},
    "store": {"core", "store", "assets"},
    "payments": {"core", "payments"},
    "waiting": {"core", "store", "waiting"},
    "booking": {"core", "store", "waiting", "payments", "booking"},
    "ops": {"core", "store", "waiting", "booking", "payments", "ops", "assets"},
    "notify": {"core", "store", "booking", "notify"},
    "runtime": {
        "core",
        "store",
        "waiting",
        "booking",
        "payments",
        "ops",
        "notify",
        "runtime",
        "assets",
    },
}


def imports_of(path: Path) -> set[str]:
    """The server subpackages a module imports (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "server" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(
        p for p in SERVER.rglob("*.py") if "assets" not in p.parts or p.name == "__init__.py"
    )


def test_every_module_is_in_a_subpackage() -> None:
    loose = [p.name for p in SERVER.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside a subpackage: {loose}"
    assert {p.name for p in SERVER.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        ALLOWED
    )


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SERVER)))
def test_imports_follow_the_layout(path: Path) -> None:
    rel = path.relative_to(SERVER)
    if len(rel.parts) == 1:
        return  # server/__init__.py and __main__.py
    package = rel.parts[0]
    wrong = imports_of(path) - ALLOWED[package]
    assert not wrong, f"{rel} (in {package}/) imports {sorted(wrong)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_subpackage_says_its_job_and_what_it_may_import(package: str) -> None:
    doc = importlib.import_module(f"server.{package}").__doc__
    assert doc and doc.strip(), package
    first = doc.strip().splitlines()[0]
    assert first.endswith((".", ":")), first
    allowed = ALLOWED[package] - {package}
    match = re.search(r"May import: (.*)", doc)
    assert match is not None, f"server/{package}/__init__.py does not say what it may import"
    said = {w.strip(" .") for w in match.group(1).split(",") if w.strip(" .") != "nothing"}
    assert said == allowed, (package, said, allowed)

"""`pip install .` works without a checkout: the Lua scripts, pages, NGINX template and
migrations travel inside the wheel and are found through importlib.resources."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

CHECK = """
import sys
from server import assets
from server.store import lua, db
assert not str(assets.QUEUE).startswith(sys.argv[1]), assets.QUEUE
for name in sys.argv[2].split(","):
    lua.script_source(name)
assert (assets.NGINX / "boxoffice.conf.template").is_file()
assert (assets.STATIC / "waiting.html").is_file()
assert len(db.migration_files()) == int(sys.argv[3])
print("ok")
"""


def test_wheel_carries_the_data_and_runs_from_elsewhere(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(
        ROOT, source, symlinks=True,
        ignore=shutil.ignore_patterns(".venv", ".git", ".boxoffice", "build", "*.egg-info",
                                      "__pycache__", ".mypy_cache", ".ruff_cache", "node_modules"),
    )  # fmt: skip
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("boxoffice-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "server/assets/queue/" + str(p.relative_to(ROOT / "queue")) for p in (ROOT / "queue").rglob("*.lua")
    } | {
        "server/assets/static/" + str(p.relative_to(ROOT / "static"))
        for p in (ROOT / "static").rglob("*") if p.is_file()
    } | {
        "server/assets/nginx/" + p.name for p in (ROOT / "nginx").iterdir() if p.is_file()
    } | {
        "server/store/migrations/" + p.name for p in (ROOT / "server/store/migrations").glob("*.sql")
    }  # fmt: skip
    assert shipped <= names, sorted(shipped - names)

    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    scripts = ",".join(p.stem for p in (ROOT / "queue").glob("*.lua"))
    folder = ROOT / "server/store/migrations"
    migrations = len([*folder.glob("*.sql"), *folder.glob("v[0-9][0-9][0-9]_*.py")])
    ran = subprocess.run(
        [sys.executable, "-c", CHECK, str(ROOT), scripts, str(migrations)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr

"""Every setting the code reads is documented in the README: each field of the Settings Struct
has a row in the "Configuration" table under its variable's name, and every environment
variable read anywhere else in server/, loadtest/ or tests/ is named in the README."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from server.core.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# os.environ["X"] (not an assignment), os.environ.get("X" …), os.getenv("X" …)
READ = re.compile(
    r"""os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\](?!\s*=[^=])"""
    r"""|(?:os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def configuration_table() -> set[str]:
    """The variables named in the first column of the README's Configuration table."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def variables_read_in_code() -> set[str]:
    found: set[str] = set()
    for folder in ("server", "loadtest", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            found.update(a or b for a, b in READ.findall(path.read_text()))
    return found


def test_every_setting_has_a_row_in_the_configuration_table() -> None:
    table = configuration_table()
    fields = [env_name(f.name) for f in msgspec.structs.fields(Settings)]
    assert len(fields) > 30  # the parse found the Struct, not an empty list
    missing = [name for name in fields if name not in table]
    assert missing == [], f"settings without a row in README.md's Configuration table: {missing}"
    unknown = sorted(table - set(fields))
    assert unknown == [], f"rows in the Configuration table that are no setting: {unknown}"


def test_every_variable_the_code_reads_is_named_in_the_readme() -> None:
    read = variables_read_in_code()
    assert {"REDIS_URL", "BOXOFFICE_REQUIRE_ALL", "BOXOFFICE_SHAPE"} <= read  # the scan works
    missing = sorted(name for name in read if not re.search(rf"`{name}\b", README))
    assert missing == [], f"variables read by the code but not named in README.md: {missing}"

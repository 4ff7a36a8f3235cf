"""Data shipped with the package: the Lua scripts (queue/), the pages (static/), NGINX (nginx/).

In a checkout each is a link to its top-level folder; a wheel holds copies, so
`pip install .` runs without the repository.

May import: nothing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def folder(name: str) -> Path:
    """The real path of one shipped folder: "queue", "static" or "nginx"."""
    return Path(str(resources.files(__name__).joinpath(name))).resolve()


QUEUE = folder("queue")
STATIC = folder("static")
NGINX = folder("nginx")

"""The NGINX configuration: render nginx/boxoffice.conf.template, check it with `nginx -t`.

render() is a pure function of the template text and Params. The template language is tiny:
`{{name}}` values, `{{#tls}}…{{/tls}}` / `{{^tls}}…{{/tls}}` sections, and blocks defined with
`#{{define name}}` … `#{{end}}` that `{{> name}}` repeats.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from server import assets

TEMPLATE = assets.NGINX / "boxoffice.conf.template"
STATIC_ROOT = assets.STATIC
DEBIAN_NGINX = "/usr/sbin/nginx"
# Descriptors kept free in each worker for log files, cache files and listening sockets.
FD_MARGIN = 256
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")
_SAFE_USER = re.compile(r"^[a-z_][a-z0-9_-]*$")
_UPSTREAM = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}$")
_SECTION = re.compile(r"\{\{([#^])(\w+)\}\}\n?(.*?)\{\{/\2\}\}\n?", re.S)
_DEFINE = re.compile(r"^#\{\{define (\w+)\}\}\n(.*?)^#\{\{end\}\}\n", re.S | re.M)
_INCLUDE = re.compile(r"^\{\{> (\w+)\}\}\n", re.M)
_VALUE = re.compile(r"\{\{(\w+)\}\}")


class NginxError(Exception):
    """NGINX is missing, or the configuration does not pass `nginx -t`."""


@dataclass(frozen=True)
class Params:
    listen_port: int
    upstreams: tuple[str, ...]
    prefix: str
    static_root: str = str(STATIC_ROOT)
    listen_host: str = "0.0.0.0"
    tls_cert: str | None = None
    tls_key: str | None = None
    # With TLS: a plain-HTTP port that only redirects to HTTPS (None: no such server).
    http_port: int | None = None
    workers: int | str = "auto"
    max_files: int = 20000
    # The account NGINX workers run as when the master starts as root (None: no `user` line).
    user: str | None = None
    upstream_options: str = field(default="max_fails=3 fail_timeout=10s")


def _check(params: Params) -> None:
    problems = []
    ports = [params.listen_port] + ([params.http_port] if params.http_port is not None else [])
    if any(not 1 <= p <= 65535 for p in ports):
        problems.append("ports must be 1-65535")
    if not params.upstreams or any(not _UPSTREAM.match(u) for u in params.upstreams):
        problems.append("upstreams must be host:port entries")
    paths = [params.prefix, params.static_root]
    if (params.tls_cert is None) != (params.tls_key is None):
        problems.append("tls_cert and tls_key go together")
    paths += [p for p in (params.tls_cert, params.tls_key) if p is not None]
    if any(not _SAFE_PATH.match(p) for p in paths):
        problems.append("paths must be absolute, without spaces, quotes or ';'")
    if not _SAFE_HOST.match(params.listen_host):
        problems.append("listen_host is not an address")
    if params.workers != "auto" and not (isinstance(params.workers, int) and params.workers >= 1):
        problems.append("workers must be 'auto' or a positive number")
    if params.max_files < 2 * FD_MARGIN:
        problems.append(f"max_files must be at least {2 * FD_MARGIN}")
    if params.user is not None and not _SAFE_USER.match(params.user):
        problems.append("user is not an account name")
    if not re.fullmatch(r"[a-z_]+=[0-9a-z]+( [a-z_]+=[0-9a-z]+)*", params.upstream_options):
        problems.append("upstream_options must be name=value words")
    if problems:
        raise ValueError("nginx parameters: " + "; ".join(problems))


def values(params: Params) -> dict[str, str]:
    """The {{name}} values of the template."""
    _check(params)
    connections = params.max_files - FD_MARGIN
    servers = "\n".join(f"        server {u} {params.upstream_options};" for u in params.upstreams)
    return {
        "user_line": f"user {params.user};" if params.user else "# no `user`: not run as root",
        "workers": str(params.workers),
        "max_files": str(params.max_files),
        "worker_connections": str(connections),
        "max_websockets": f"{connections // 2:,}",
        "prefix": params.prefix.rstrip("/") or "/",
        "static_root": params.static_root.rstrip("/") or "/",
        "listen_host": params.listen_host,
        "listen_port": str(params.listen_port),
        "http_port": str(params.http_port or ""),
        "tls_cert": params.tls_cert or "",
        "tls_key": params.tls_key or "",
        "upstream_servers": servers,
    }


def render(template_text: str, params: Params) -> str:
    """The NGINX configuration for these parameters. Pure: reads and writes nothing."""
    tls = params.tls_cert is not None
    flags = {"tls": tls, "redirect": tls and params.http_port is not None}
    vals = values(params)

    def section(match: re.Match[str]) -> str:
        kind, name, body = match.group(1), match.group(2), match.group(3)
        if name not in flags:
            raise ValueError(f"template: unknown section {name!r}")
        keep = flags[name] if kind == "#" else not flags[name]
        return body if keep else ""

    text = template_text
    while _SECTION.search(text):
        text = _SECTION.sub(section, text)
    blocks = {m.group(1): m.group(2) for m in _DEFINE.finditer(text)}
    text = _DEFINE.sub("", text)

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in blocks:
            raise ValueError(f"template: no block {name!r}")
        return blocks[name]

    text = _INCLUDE.sub(include, text)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in vals:
            raise ValueError(f"template: unknown value {name!r}")
        return vals[name]

    text = _VALUE.sub(value, text)
    if "{{" in text:
        raise ValueError("template: unbalanced or unknown markup left after rendering")
    return re.sub(r"\n{3,}", "\n\n", text)


def prepare_prefix(prefix: Path, user: str | None = None) -> None:
    """Create the folders the rendered configuration writes to (owned by `user` if given)."""
    folders = [prefix, prefix / "logs", prefix / "cache", prefix / "temp"]
    folders += [prefix / "temp" / name for name in TEMP_DIRS]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    if user is not None:
        # Workers write cache and temporary files; the master (root) writes pid and logs.
        for path in [prefix / "cache", *(prefix / "cache").rglob("*"), *folders[3:]]:
            shutil.chown(path, user)


def worker_user() -> str | None:
    """The `user` for NGINX workers: None unless started as root, then www-data or nobody."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def find_nginx() -> str | None:
    """The nginx binary: on PATH, else Debian's /usr/sbin/nginx, else None."""
    found = shutil.which("nginx")
    if found:
        return found
    return DEBIAN_NGINX if os.access(DEBIAN_NGINX, os.X_OK) else None


def command(nginx: str, prefix: Path, conf: Path, *extra: str) -> list[str]:
    """An nginx command line that touches nothing outside `prefix` (-e: the startup error log)."""
    error_log = str(prefix / "logs" / "error.log")
    return [nginx, "-p", str(prefix), "-c", str(conf), "-e", error_log, *extra]


def check_config(nginx: str, prefix: Path, conf: Path, timeout: float = 20) -> str:
    """Run `nginx -t` on the configuration; its output, or NginxError with it."""
    done = subprocess.run(
        command(nginx, prefix, conf, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise NginxError(f"nginx -t failed:\n{output}")
    return output


def write_config(prefix: Path, params: Params, template: Path = TEMPLATE) -> Path:
    """Render the template into prefix/nginx.conf (folders created); the file's path."""
    prepare_prefix(prefix, params.user)
    conf = prefix / "nginx.conf"
    conf.write_text(render(template.read_text(), params))
    return conf

"""Settings: one msgspec Struct read from BOXOFFICE_* variables plus REDIS_URL (or
REDIS_CLUSTER_NODES / REDIS_SENTINELS) and DATABASE_URL."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec
from aiohttp import web

PREFIX = "BOXOFFICE_"
PLAIN_VARIABLES = {
    "REDIS_URL": "redis_url",
    "REDIS_CLUSTER_NODES": "redis_cluster_nodes",
    "REDIS_SENTINELS": "redis_sentinels",
    "DATABASE_URL": "database_url",
    "STRIPE_SECRET_KEY": "stripe_secret_key",
    "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "STRIPE_PUBLISHABLE_KEY": "stripe_publishable_key",
    "STRIPE_API_BASE": "stripe_api_base",
}
SECRET_FIELDS = ("secret", "admin_token")
NOT_SETTINGS = {"BOXOFFICE_REQUIRE_ALL"}  # read by the test suite, not by the service
MIN_SECRET_LENGTH = 32
# The parts of the service a process runs (server.runtime.app): web = HTTP and websockets,
# admission = the admission step, sell-out and autopilot, relay = outbox and reservations,
# notifier = mail, payments = captures, voids, refunds and order expiry.
ROLES = ("web", "admission", "relay", "notifier", "payments")


class SettingsError(Exception):
    """The environment does not describe a valid configuration; start-up stops."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["dev", "production"] = "dev"
    host: str = "127.0.0.1"
    port: int = msgspec.field(default=8080)
    workers: int = 1
    data_dir: str = ".boxoffice"
    redis_url: str = ""
    redis_cluster_nodes: str = (
        ""  # host:port,… startup nodes of a Redis Cluster (then no REDIS_URL)
    )
    redis_sentinels: str = ""  # host:port,… of Redis Sentinels watching one primary
    redis_sentinel_master: str = ""  # the name the sentinels know the primary by
    database_url: str = ""
    secret: str = ""
    admin_token: str = ""
    grace_seconds: int = 120
    tick_ms: int = 200
    broadcast_ms: int = 1000
    rank_refresh_seconds: int = 30
    heartbeat_seconds: int = 20
    access_token_leeway_seconds: int = 5
    max_body_bytes: int = 64 * 1024
    redis_max_connections: int = 64
    database_pool_size: int = 10
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    public_url: str = ""
    checkout_minutes: int = 5
    late_payment_minutes: int = 10
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_publishable_key: str = ""
    stripe_api_base: str = ""
    roles: str = ",".join(ROLES)  # comma-separated subset of ROLES run by each worker

    def __post_init__(self) -> None:
        _check_ranges(self)

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.roles.split(",") if r.strip())

    @property
    def redis_configured(self) -> bool:
        """Some Redis is named: a URL, a cluster or sentinels (else an embedded one starts)."""
        return bool(self.redis_url or self.redis_cluster_nodes or self.redis_sentinels)

    @property
    def embedded(self) -> bool:
        return not self.redis_configured or not self.database_url


_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")


def parse_nodes(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port,…` (an IPv6 host in brackets) → [(host, port)]; ValueError if
    malformed or empty."""
    nodes = []
    for item in (part.strip() for part in text.split(",")):
        host, sep, port = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1] if _IPV6.fullmatch(host[1:-1]) else ""
        elif not _HOSTNAME.fullmatch(host):
            host = ""
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"not host:port: {item!r}")
        nodes.append((host, int(port)))
    return nodes


def _nodes_ok(text: str) -> bool:
    if not text:
        return True
    try:
        parse_nodes(text)
    except ValueError:
        return False
    return True


def _check_ranges(s: Settings) -> None:
    checks = {
        "port": 0 <= s.port <= 65535,
        "workers": 1 <= s.workers <= 64,
        "grace_seconds": 5 <= s.grace_seconds <= 3600,
        "tick_ms": 20 <= s.tick_ms <= 5000,
        "broadcast_ms": s.tick_ms <= s.broadcast_ms <= 60000,
        "rank_refresh_seconds": 1 <= s.rank_refresh_seconds <= 3600,
        "heartbeat_seconds": 1 <= s.heartbeat_seconds < s.grace_seconds,
        "max_body_bytes": 1024 <= s.max_body_bytes <= 16 * 1024 * 1024,
        "redis_max_connections": 2 <= s.redis_max_connections <= 10000,
        "database_pool_size": 1 <= s.database_pool_size <= 1000,
        "checkout_minutes": 1 <= s.checkout_minutes <= 60,
        "late_payment_minutes": 0 <= s.late_payment_minutes <= 24 * 60,
        "stripe_webhook_secret": not s.stripe_secret_key or bool(s.stripe_webhook_secret),
        "roles": bool(s.role_set) and s.role_set <= set(ROLES),
        "redis_cluster_nodes": _nodes_ok(s.redis_cluster_nodes)
        and not (s.redis_cluster_nodes and s.redis_sentinels),
        "redis_sentinels": _nodes_ok(s.redis_sentinels),
        "redis_sentinel_master": bool(s.redis_sentinel_master) == bool(s.redis_sentinels),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise SettingsError(f"setting out of range: {', '.join(bad)}")


def env_name(field: str) -> str:
    for variable, name in PLAIN_VARIABLES.items():
        if name == field:
            return variable
    return PREFIX + field.upper()


def from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment; unknown or malformed values raise SettingsError."""
    environ = os.environ if environ is None else environ
    known = set(Settings.__struct_fields__)
    raw: dict[str, object] = {}
    unknown = []
    for variable, value in environ.items():
        if variable in PLAIN_VARIABLES:
            raw[PLAIN_VARIABLES[variable]] = value
        elif variable.startswith(PREFIX) and variable not in NOT_SETTINGS:
            field = variable[len(PREFIX) :].lower()
            if field in known and field not in PLAIN_VARIABLES.values():
                raw[field] = value
            else:
                unknown.append(variable)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"malformed setting: {_explain(exc)}") from None
    _check_secrets(settings)
    return settings


def _explain(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    marker = "at `$."
    if marker in message:
        field = message.split(marker, 1)[1].rstrip("`").split("[")[0]
        return f"{env_name(field)}: {message.split(' - at ')[0]}"
    return message


def _check_secrets(s: Settings) -> None:
    if s.mode != "production":
        return
    for field in SECRET_FIELDS:
        value = getattr(s, field)
        if len(value) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{env_name(field)} must be set to at least {MIN_SECRET_LENGTH} characters "
                "in production mode"
            )
    if s.embedded:
        raise SettingsError(
            "production mode needs DATABASE_URL and REDIS_URL (or REDIS_CLUSTER_NODES or "
            "REDIS_SENTINELS)"
        )
    if s.stripe_api_base:
        raise SettingsError("STRIPE_API_BASE (a stand-in for Stripe) is for development only")


def with_dev_secrets(s: Settings) -> tuple[Settings, bool]:
    """Fill missing secrets for development from a file under data_dir (generated once).

    Returns the settings and whether anything was generated or loaded. Production mode never
    reaches this: _check_secrets refuses missing secrets there.
    """
    missing = [f for f in SECRET_FIELDS if not getattr(s, f)]
    if not missing:
        return s, False
    if s.mode == "production":
        raise SettingsError("secrets must come from the environment in production mode")
    path = Path(s.data_dir) / "dev-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    for field in SECRET_FIELDS:
        stored.setdefault(field, secrets.token_urlsafe(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    path.chmod(0o600)
    values = {f: stored[f] for f in missing}
    return msgspec.structs.replace(s, **values), True


def to_env(s: Settings) -> dict[str, str]:
    """The environment that reproduces these settings in a child process."""
    out: dict[str, str] = {}
    for field in Settings.__struct_fields__:
        value = getattr(s, field)
        out[env_name(field)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


SETTINGS = web.AppKey("settings", Settings)

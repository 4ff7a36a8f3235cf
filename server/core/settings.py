"""Settings: one msgspec Struct read from BOXOFFICE_* variables plus REDIS_URL (or
REDIS_CLUSTER_NODES / REDIS_SENTINELS) and DATABASE_URL."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from email.utils import getaddresses
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import msgspec
from aiohttp import web

from server.core.client_address import parse_networks

PREFIX = "BOXOFFICE_"
PLAIN_VARIABLES = {
    "REDIS_URL": "redis_url",
    "REDIS_CLUSTER_NODES": "redis_cluster_nodes",
    "REDIS_SENTINELS": "redis_sentinels",
    "DATABASE_URL": "database_url",
    "DATABASE_MIGRATE_URL": "database_migrate_url",
    "STRIPE_SECRET_KEY": "stripe_secret_key",
    "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "STRIPE_PUBLISHABLE_KEY": "stripe_publishable_key",
    "STRIPE_API_BASE": "stripe_api_base",
}
SECRET_FIELDS = ("secret", "admin_token")
NOT_SETTINGS = {"BOXOFFICE_REQUIRE_ALL"}  # read by the test suite, not by the service
MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 96
# The parts of the service a process runs (server.runtime.app): web = HTTP and websockets,
# admission = the admission step, sell-out and autopilot, relay = outbox and reservations,
# notifier = mail, payments = captures, voids, refunds and order expiry.
ROLES = ("web", "admission", "relay", "notifier", "payments")
# What sits between the app and PostgreSQL: "pgbouncer" = PgBouncer in transaction pooling mode,
# where a server connection changes between transactions (server.store.db.create_pool).
Pooler = Literal["none", "pgbouncer"]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class SettingsError(Exception):
    """The environment does not describe a valid configuration; start-up stops."""


DEFAULT_RETURN_WINDOW_SECONDS = 1800


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
    # A direct connection to the primary for migrations (`python -m server migrate`); needed
    # when DATABASE_URL goes through a pooler. Empty: DATABASE_URL.
    database_migrate_url: str = ""
    database_pooler: Pooler = "none"
    secret: str = ""
    admin_token: str = ""
    grace_seconds: int = 120
    # A waiting fan silent for longer than the grace is passed by, not dropped: back within
    # this window, the place is theirs again (at the head of the line if their turn passed).
    return_window_seconds: int = DEFAULT_RETURN_WINDOW_SECONDS
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
    trusted_proxies: str = ""  # addresses/CIDRs whose X-Forwarded-For names the client
    smtp_url: str = ""
    mail_from: str = ""
    # Console sessions of named operators (server/ops/sessions.py): signed out after this long
    # without a request, and after this long whatever happens; a fresh code (step-up) lasts
    # step_up_minutes for the session's high-risk actions.
    console_idle_minutes: int = 30
    console_session_hours: int = 12
    step_up_minutes: int = 5

    def __post_init__(self) -> None:
        _check_ranges(self)
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"BOXOFFICE_TRUSTED_PROXIES: {exc}") from None

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.roles.split(",") if r.strip())

    @property
    def migrate_url(self) -> str:
        return self.database_migrate_url or self.database_url

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
        "return_window_seconds": s.grace_seconds <= s.return_window_seconds <= 24 * 3600,
        "tick_ms": 20 <= s.tick_ms <= 5000,
        "broadcast_ms": s.tick_ms <= s.broadcast_ms <= 60000,
        "rank_refresh_seconds": 1 <= s.rank_refresh_seconds <= 3600,
        "heartbeat_seconds": 1 <= s.heartbeat_seconds < s.grace_seconds,
        "max_body_bytes": 1024 <= s.max_body_bytes <= 16 * 1024 * 1024,
        "redis_max_connections": 2 <= s.redis_max_connections <= 10000,
        "database_pool_size": 1 <= s.database_pool_size <= 1000,
        "database_pooler": s.database_pooler == "none" or bool(s.database_url),
        "checkout_minutes": 1 <= s.checkout_minutes <= 60,
        "late_payment_minutes": 0 <= s.late_payment_minutes <= 24 * 60,
        "stripe_webhook_secret": not s.stripe_secret_key or bool(s.stripe_webhook_secret),
        "roles": bool(s.role_set) and s.role_set <= set(ROLES),
        # redis-py's URL forms (password and TLS included: redis://:pw@h/0, rediss://…);
        # the URL reaches redis-py whole, nothing strips its credentials.
        "redis_url": not s.redis_url or s.redis_url.startswith(REDIS_SCHEMES),
        "console_idle_minutes": 1 <= s.console_idle_minutes <= 24 * 60,
        "console_session_hours": 1 <= s.console_session_hours <= 7 * 24,
        "step_up_minutes": 1 <= s.step_up_minutes <= 60,
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
    _check_mail(settings)
    return settings


def _explain(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    marker = "at `$."
    if marker in message:
        field = message.split(marker, 1)[1].rstrip("`").split("[")[0]
        return f"{env_name(field)}: {message.split(' - at ')[0]}"
    return message


def estimated_bits(secret: str) -> float:
    """A rough upper estimate of a secret's entropy: its length times the Shannon entropy of its
    own character frequencies. It refuses what is visibly weak (one character repeated, a word
    repeated, few distinct characters); it cannot tell a random string from a well-mixed
    guessable one, so it is a floor, not a proof. 32 random hex digits score 89-128 (≥ 96 in
    all but ~1 in 7,000 draws); `secrets.token_urlsafe(32)` scores ≥ 180."""
    n = len(secret)
    if n == 0:
        return 0.0
    return -n * sum(c / n * math.log2(c / n) for c in Counter(secret).values())


def secret_problem(value: str) -> str | None:
    """Why a production secret is unfit, or None."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"must be set to at least {MIN_SECRET_LENGTH} characters"
    if not value.isascii() or not value.isprintable() or " " in value:
        return "must be printable ASCII without spaces"
    if estimated_bits(value) < MIN_SECRET_BITS:
        return (
            f"is too repetitive (about {estimated_bits(value):.0f} of {MIN_SECRET_BITS} bits): "
            "generate one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return None


def _check_secrets(s: Settings) -> None:
    """Production refuses weak or shared secrets, embedded servers and a missing payment
    provider: the built-in `dev` provider approves a test card, so it never runs there."""
    if s.mode != "production":
        return
    for field in SECRET_FIELDS:
        if field == "admin_token" and not s.admin_token:
            continue  # optional: without it, only named operators and scoped tokens get in
        problem = secret_problem(getattr(s, field))
        if problem is not None:
            raise SettingsError(f"{env_name(field)} {problem} in production mode")
    if s.secret == s.admin_token:
        raise SettingsError("BOXOFFICE_SECRET and BOXOFFICE_ADMIN_TOKEN must differ")
    if s.embedded:
        raise SettingsError(
            "production mode needs DATABASE_URL and REDIS_URL (or REDIS_CLUSTER_NODES or "
            "REDIS_SENTINELS)"
        )
    if not s.stripe_secret_key or not s.stripe_webhook_secret:
        raise SettingsError(
            "production mode needs a payment provider: STRIPE_SECRET_KEY and "
            "STRIPE_WEBHOOK_SECRET (the dev provider sells for a test card number)"
        )
    if s.stripe_api_base:
        raise SettingsError("STRIPE_API_BASE (a stand-in for Stripe) is for development only")


class SmtpTarget(msgspec.Struct, frozen=True):
    """Where mail goes, from BOXOFFICE_SMTP_URL: `smtp://host:port` (plain, port 25),
    `smtp+starttls://user:pass@host:587` (STARTTLS, 587) or `smtps://user:pass@host:465`
    (TLS from the first byte, 465). User and password are percent-decoded."""

    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:  # never the password, wherever a target is printed or logged
        return f"SmtpTarget({self.security}://{self.host}:{self.port})"

    __str__ = __repr__


SMTP_SCHEMES: dict[str, tuple[Literal["none", "starttls", "tls"], int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
DEV_MAIL_FROM = "Boxoffice <boxoffice@localhost>"


def smtp_target(url: str) -> SmtpTarget:
    """Parse BOXOFFICE_SMTP_URL; SettingsError (which never repeats the password) if malformed."""
    problem = "expected smtp://host:port, smtp+starttls://user:pass@host:587 or smtps://…@host:465"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(f"BOXOFFICE_SMTP_URL is malformed: {problem}") from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise SettingsError(f"BOXOFFICE_SMTP_URL is malformed: {problem}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError("BOXOFFICE_SMTP_URL takes no path, query or fragment")
    security, default_port = SMTP_SCHEMES[parts.scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def mail_from(s: Settings) -> str:
    """The From address of every mail (a development default when unset; production sets it)."""
    return s.mail_from or DEV_MAIL_FROM


def _check_mail(s: Settings) -> None:
    """Mail settings parse; production refuses to start without SMTP, a sender and the public
    URL the mailed order links point to (a fan's tickets would otherwise never arrive or lead
    to the bind address), and never sends a password over a connection without TLS."""
    target = smtp_target(s.smtp_url) if s.smtp_url else None
    found = [a for _, a in getaddresses([s.mail_from])] if s.mail_from else []
    if s.mail_from and (
        len(found) != 1 or "@" not in found[0] or any(c in s.mail_from for c in "\r\n")
    ):
        raise SettingsError("BOXOFFICE_MAIL_FROM must be one address, e.g. Tickets <t@example.com>")
    if s.mode != "production":
        return
    if target is None:
        raise SettingsError("production mode needs BOXOFFICE_SMTP_URL: paid orders are mailed")
    if not s.mail_from:
        raise SettingsError("production mode needs BOXOFFICE_MAIL_FROM (the sender of tickets)")
    if not s.public_url.startswith("https://"):
        raise SettingsError(
            "production mode needs BOXOFFICE_PUBLIC_URL (https://…): mailed order links use it"
        )
    if target.password and target.security == "none":
        raise SettingsError(
            "BOXOFFICE_SMTP_URL sends a password without TLS: use smtp+starttls:// or smtps://"
        )


def with_dev_secrets(s: Settings) -> tuple[Settings, frozenset[str]]:
    """Fill missing secrets for development from a file under data_dir (generated once).

    Returns the settings and the fields filled from that file (generated now or on an earlier
    run). In production mode the secret must come from the environment (_check_secrets refuses
    it missing) and a missing admin token stays missing: named operators replace it.
    """
    missing = [f for f in SECRET_FIELDS if not getattr(s, f)]
    if s.mode == "production":
        missing = [f for f in missing if f != "admin_token"]
    if not missing:
        return s, frozenset()
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
    return msgspec.structs.replace(s, **values), frozenset(missing)


def to_env(s: Settings) -> dict[str, str]:
    """The environment that reproduces these settings in a child process."""
    out: dict[str, str] = {}
    for field in Settings.__struct_fields__:
        value = getattr(s, field)
        out[env_name(field)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


SETTINGS = web.AppKey("settings", Settings)

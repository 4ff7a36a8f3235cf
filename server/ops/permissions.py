"""Who may do what: ONE table from each admin route to the roles and the API-token scope that
may call it and whether it is high-risk, plus the pure rules that decide it.

To add an admin route: add its (method, path) line to TABLE (tests/test_operators.py fails for
a route under /api/admin/ without one, and admin_only() refuses such a route with 403)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from msgspec import UNSET

from server.core.messages import EventPatch

Kind = Literal["admin", "token", "session"]
Risk = Literal["never", "always", "depends"]

Scope = Literal["events:read", "events:write", "checkin", "orders:read", "orders:write"]
SCOPES: tuple[Scope, ...] = get_args(Scope)

OWNERS = frozenset({"owner"})
RUNNERS = frozenset({"owner", "operator"})
READERS = frozenset({"owner", "operator", "viewer"})
DOOR = frozenset({"owner", "operator", "door"})
EVERYONE = frozenset({"owner", "operator", "viewer", "door"})

# "admit next N" beyond this many at once asks for a fresh code
ADMIT_WITHOUT_STEP_UP = 100
# a rate raised to more than this many times the current one asks for a fresh code
RATE_FACTOR_WITHOUT_STEP_UP = 2


@dataclass(frozen=True)
class Rule:
    """roles: the operator roles that may (signed in with a session); scope: the API-token
    scope that may (None: no scoped token); risk: "always" asks a session for a fresh code,
    "depends" leaves it to the handler's rule below (with the request's body); public: no
    credential at all; self_service: only a signed-in operator acting on their own session or
    account (not a token, not the shared admin token); while_temporary: allowed while the
    password is still the temporary one."""

    roles: frozenset[str] = frozenset()
    scope: str | None = None
    risk: Risk = "never"
    public: bool = False
    self_service: bool = False
    while_temporary: bool = False


PUBLIC = Rule(public=True)
SELF = Rule(EVERYONE, self_service=True, while_temporary=True)

ADMIN = "/api/admin"
EVENT = f"{ADMIN}/events/{{event_id}}"

TABLE: dict[tuple[str, str], Rule] = {
    # events
    ("GET", f"{ADMIN}/events"): Rule(READERS, "events:read"),
    ("POST", f"{ADMIN}/events"): Rule(RUNNERS, "events:write"),
    ("GET", EVENT): Rule(READERS, "events:read"),
    ("PATCH", EVENT): Rule(RUNNERS, "events:write", "depends"),
    ("PATCH", f"{EVENT}/seats"): Rule(RUNNERS, "events:write"),
    ("GET", f"{EVENT}/stats"): Rule(READERS, "events:read"),
    ("POST", f"{EVENT}/admit"): Rule(RUNNERS, "events:write", "depends"),
    ("POST", f"{EVENT}/rebuild-inventory"): Rule(RUNNERS, "events:write", "always"),
    # console
    ("GET", f"{EVENT}/audit"): Rule(READERS, "events:read"),
    ("GET", f"{EVENT}/eta"): Rule(READERS, "events:read"),
    ("GET", f"{EVENT}/autopilot"): Rule(READERS, "events:read"),
    ("GET", f"{EVENT}/bots"): Rule(READERS, "events:read"),
    ("POST", f"{EVENT}/sources/purge"): Rule(RUNNERS, "events:write", "depends"),
    ("PATCH", f"{EVENT}/autopilot"): Rule(RUNNERS, "events:write"),
    ("GET", f"{EVENT}/live"): Rule(READERS, "events:read"),
    # after the sale: order search, refunds, bulk cancels (a dry run changes nothing)
    ("GET", f"{ADMIN}/orders"): Rule(RUNNERS, "orders:read"),
    ("POST", f"{ADMIN}/orders/cancel"): Rule(RUNNERS, "orders:write", "depends"),
    ("POST", f"{ADMIN}/orders/{{order_id}}/refund"): Rule(RUNNERS, "orders:write", "always"),
    # the door: its events to pick from (id, name, venue, start only), its counter, a scan
    ("GET", f"{ADMIN}/door/events"): Rule(DOOR, "checkin"),
    ("GET", "/api/events/{event_id}/checkins"): Rule(DOOR, "checkin"),
    ("POST", "/api/events/{event_id}/checkins"): Rule(DOOR, "checkin"),
    # signing in and one's own account
    ("GET", f"{ADMIN}/sign-in-options"): PUBLIC,
    ("POST", f"{ADMIN}/session"): PUBLIC,
    ("GET", f"{ADMIN}/session"): SELF,
    ("DELETE", f"{ADMIN}/session"): SELF,
    ("DELETE", f"{ADMIN}/sessions"): SELF,
    ("POST", f"{ADMIN}/account/password"): SELF,
    ("POST", f"{ADMIN}/account/totp"): SELF,
    ("POST", f"{ADMIN}/account/totp/confirm"): SELF,
    ("POST", f"{ADMIN}/account/recovery-codes"): Rule(EVERYONE, risk="always", self_service=True),
    # operators, tokens and their audit trail (owners; the shared admin token bootstraps)
    ("GET", f"{ADMIN}/operators"): Rule(OWNERS),
    ("POST", f"{ADMIN}/operators"): Rule(OWNERS, risk="always"),
    ("PATCH", f"{ADMIN}/operators/{{email}}"): Rule(OWNERS, risk="always"),
    ("POST", f"{ADMIN}/operators/{{email}}/reset"): Rule(OWNERS, risk="always"),
    ("GET", f"{ADMIN}/tokens"): Rule(OWNERS),
    ("POST", f"{ADMIN}/tokens"): Rule(OWNERS, risk="always"),
    ("DELETE", f"{ADMIN}/tokens/{{name}}"): Rule(OWNERS),
    ("GET", f"{ADMIN}/audit"): Rule(OWNERS),
}


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (its method and canonical path), or None if it has none; HEAD
    follows GET."""
    method = method.upper()
    return TABLE.get(("GET" if method == "HEAD" else method, path))


@dataclass(frozen=True)
class Principal:
    """Who is asking: the shared admin token, a scoped API token, or a signed-in operator."""

    kind: Kind
    who: str  # as the audit trail names it: an email, "token:<name>", or the admin label
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    operator_id: int | None = None
    session: str | None = None  # the session id's digest
    csrf_token: str | None = None
    stepped_up: bool = False
    must_change_password: bool = False
    token_name: str | None = None


Verdict = Literal["allowed", "forbidden", "password_first"]


def verdict(rule: Rule, p: Principal) -> Verdict:
    """May `p` call a route with this rule (before any step-up)?"""
    if rule.public:
        return "allowed"
    if p.kind == "admin":
        return "forbidden" if rule.self_service else "allowed"
    if p.kind == "token":
        return "allowed" if rule.scope is not None and rule.scope in p.scopes else "forbidden"
    if p.role not in rule.roles:
        return "forbidden"
    if p.must_change_password and not rule.while_temporary:
        return "password_first"
    return "allowed"


def needs_step_up(high_risk: bool, p: Principal) -> bool:
    """A high-risk action by a signed-in operator needs a fresh code unless one was given in
    the last few minutes; tokens are their own credential and never step up."""
    return high_risk and p.kind == "session" and not p.stepped_up


def patch_is_high_risk(rate_per_min: int, closed: bool, patch: EventPatch) -> bool:
    """Closing or reopening the sale, or raising the rate to more than twice the current one
    (any raise from 0), asks for a fresh code; everything else a PATCH can do does not."""
    if patch.closed is not UNSET and patch.closed != closed:
        return True
    return (
        patch.rate_per_min is not UNSET
        and patch.rate_per_min > RATE_FACTOR_WITHOUT_STEP_UP * rate_per_min
    )


def admit_is_high_risk(count: int) -> bool:
    return count > ADMIT_WITHOUT_STEP_UP


def cancel_is_high_risk(dry_run: bool) -> bool:
    """A bulk cancel refunds money; its dry run only counts."""
    return not dry_run

"""What signing costs on the join path: Boxoffice's own signed values (server/core/tokens.py)
against `itsdangerous`, the well-kept library made for this, measured with timeit in one run and
printed side by side. Nothing is asserted; no server, no network.

Each figure is µs per operation (best of REPEATS runs of NUMBER operations, as timeit advises):
sign + verify of the visitor cookie (what a new visitor's join costs), verify alone (what every
request of a known visitor costs), and the same for the access token (signed claims) and ticket
codes. itsdangerous is configured as close to ours as it goes: HMAC-SHA256, a salt per kind.

    python -m loadtest.bench_tokens [--number N | --quick]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import secrets
import timeit
from collections.abc import Callable
from importlib.metadata import version

import itsdangerous

from server.core.tokens import AccessClaims, Signer, new_id

REPEATS = 5


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEATS)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_tokens", description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="operations per timing run")
    parser.add_argument("--quick", action="store_true", help="a short run (2,000 operations)")
    args = parser.parse_args(argv)
    n = 2_000 if args.quick else max(100, min(args.number, 1_000_000))

    secret = secrets.token_urlsafe(32)
    ours = Signer(secret)
    sha = hashlib.sha256
    its_visitor = itsdangerous.Signer(secret, salt="visitor", digest_method=sha)
    its_ticket = itsdangerous.Signer(secret, salt="ticket", digest_method=sha)
    its_access = itsdangerous.URLSafeSerializer(
        secret, salt="access", signer_kwargs={"digest_method": sha}
    )

    visitor = new_id()
    order = new_id()
    claims = AccessClaims("spring-tour", visitor, new_id(), 2_000_000_000_000)
    claims_dict = {"e": claims.e, "v": claims.v, "q": claims.q, "x": claims.x}
    cookie, its_cookie = ours.visitor_cookie(visitor), its_visitor.sign(visitor)
    token, its_token = ours.access_token(claims), its_access.dumps(claims_dict)
    code, its_code = ours.ticket_code(order, 1), its_ticket.sign(f"{order}-1")
    assert ours.visitor_from_cookie(cookie) == visitor
    assert its_visitor.unsign(its_cookie).decode() == visitor

    def verify_ours_access() -> object:
        return ours.verify_access(token, event_id="spring-tour", visitor_id=visitor, now_ms=0)

    rows = [
        (
            "visitor cookie: sign + verify (new visitor's join)",
            lambda: ours.visitor_from_cookie(ours.visitor_cookie(visitor)),
            lambda: its_visitor.unsign(its_visitor.sign(visitor)),
        ),
        (
            "visitor cookie: verify (every known visitor's request)",
            lambda: ours.visitor_from_cookie(cookie),
            lambda: its_visitor.unsign(its_cookie),
        ),
        (
            "access token: sign (admission)",
            lambda: ours.access_token(claims),
            lambda: its_access.dumps(claims_dict),
        ),
        (
            "access token: verify (hold, checkout)",
            verify_ours_access,
            lambda: its_access.loads(its_token),
        ),
        (
            "ticket code: sign + verify",
            lambda: ours.verify_ticket(ours.ticket_code(order, 1)),
            lambda: its_ticket.unsign(its_ticket.sign(f"{order}-1")),
        ),
    ]
    print(
        f"Python {platform.python_version()}, itsdangerous {version('itsdangerous')}, "
        f"{platform.machine()}; best of {REPEATS} x {n:,} operations"
    )
    print(f"{'µs per operation':58} {'boxoffice':>10} {'itsdangerous':>13} {'ratio':>7}")
    for label, mine, theirs in rows:
        a, b = best_us(mine, n), best_us(theirs, n)
        print(f"{label:58} {a:10.2f} {b:13.2f} {b / a:6.2f}x")
    print(
        f"lengths: cookie {len(cookie)} / {len(its_cookie)}, access token {len(token)} / "
        f"{len(its_token)}, ticket code {len(code)} / {len(its_code)} characters"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""An in-process fake of the slice of Stripe's HTTP API that server/payments/stripe_provider.py
calls through the real `stripe` library: PaymentIntents (create, retrieve — with
`expand[]=payment_method` —, capture, cancel), card PaymentMethods with Stripe's fingerprint
(one per card number), refunds (refused on demand, and once per intent as Stripe does), and
charge events (a Charge with the paying card's fingerprint in `payment_method_details`, as
Stripe sends them).

It is the only stand-in in the Stripe tests. It checks the secret key, records every request
(path, parsed form parameters, Idempotency-Key), honours idempotency keys the way Stripe does
(same key and parameters: the first response again, no new object; same key, other
parameters: an `idempotency_error`), keeps each intent's state machine, and builds signed
webhook events about its intents.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import stripe
from aiohttp import web

Json = dict[str, Any]

CANCELABLE = {
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "requires_capture",
    "processing",
}


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it, and what it answered."""

    seq: int
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None
    status: int
    replayed: bool
    response: Json


class StripeFailure(Exception):
    def __init__(
        self, status: int, kind: str, code: str, message: str, executed: bool = True
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"error": {"type": kind, "code": code, "message": message}}
        # Stripe keeps a result under its idempotency key only once the endpoint began to
        # execute; a request refused before (an outage) may be retried with the same key.
        self.executed = executed


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def nested(params: dict[str, str], name: str) -> dict[str, str]:
    """`metadata[order_id]=x` style form parameters as a dict."""
    start = f"{name}["
    return {
        k[len(start) : -1]: v for k, v in params.items() if k.startswith(start) and k[-1] == "]"
    }


class FakeStripe:
    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self.url = ""
        self.requests: list[Recorded] = []
        self.intents: dict[str, Json] = {}
        self.refunds: dict[str, Json] = {}
        self.payment_methods: dict[str, Json] = {}
        # Stripe failing some operations ("retrieve", "capture") with this HTTP status (5xx:
        # its side is down; the library retries, then raises).
        self.outage: dict[str, int] = {}
        # When set, refunds are refused with this (code, message), as Stripe refuses one (e.g. a
        # balance too low to refund from).
        self.refund_refusal: tuple[str, str] | None = None
        # Called with each recorded request before its answer is sent (the object already
        # exists in the fake by then): tests use it to look at the database at that moment,
        # or to hold an answer back.
        self.on_request: Callable[[Recorded], Awaitable[None]] | None = None
        self._idempotent: dict[str, tuple[str, dict[str, str], int, Json]] = {}
        self._runner: web.AppRunner | None = None

    # ---- server -----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve)
        app.router.add_post("/v1/payment_intents/{id}/capture", self._capture)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self._cancel)
        app.router.add_post("/v1/refunds", self._refund)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- what tests look at -----------------------------------------------------------------

    def calls(self, path_suffix: str) -> list[Recorded]:
        """Requests whose path ends with this (e.g. "/capture", "/v1/payment_intents")."""
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/payment_intents"]

    def captures(self, intent_id: str | None = None) -> list[Recorded]:
        return [r for r in self.calls("/capture") if intent_id is None or intent_id in r.path]

    def cancels(self, intent_id: str | None = None) -> list[Recorded]:
        return [r for r in self.calls("/cancel") if intent_id is None or intent_id in r.path]

    def intent_for_order(self, order_id: str) -> Json:
        found = [pi for pi in self.intents.values() if pi["metadata"].get("order_id") == order_id]
        assert len(found) == 1, f"{len(found)} intents for order {order_id}"
        return found[0]

    # ---- the customer's side (what Stripe.js and the bank would do) -------------------------

    def create_intent(self, amount: int, currency: str, metadata: dict[str, str]) -> Json:
        """An intent made outside the app (e.g. by another process whose commit is late)."""
        return self._make_intent(
            {"amount": str(amount), "currency": currency, "capture_method": "manual"}, metadata
        )

    @staticmethod
    def fingerprint(card: str) -> str:
        """Stripe's card fingerprint: 16 letters and digits, the same for one card number."""
        return hashlib.sha256(f"fake-stripe:{card}".encode()).hexdigest()[:16]

    def card(self, number: str) -> str:
        """A card PaymentMethod (what Stripe.js makes from the fan's card), its id."""
        pm_id = _new_id("pm")
        self.payment_methods[pm_id] = {
            "id": pm_id,
            "object": "payment_method",
            "type": "card",
            "card": {
                "brand": "visa",
                "last4": number[-4:],
                "exp_month": 12,
                "exp_year": 2030,
                "fingerprint": self.fingerprint(number),
            },
            "livemode": False,
        }
        return pm_id

    def authorize(self, intent_id: str, card: str | None = None) -> Json:
        """The customer confirmed with a good card: funds held, waiting for capture. With a
        card number, the intent's payment_method is a card PaymentMethod carrying Stripe's
        fingerprint of that number; without, it names none."""
        pi = self.intents[intent_id]
        assert pi["status"] in ("requires_payment_method", "requires_confirmation"), pi["status"]
        pi.update(status="requires_capture", amount_capturable=pi["amount"])
        pi["last_payment_error"] = None
        pi["payment_method"] = None if card is None else self.card(card)
        return copy.deepcopy(pi)

    def decline(self, intent_id: str) -> Json:
        """The card was declined: the intent waits for another payment method."""
        pi = self.intents[intent_id]
        pi.update(status="requires_payment_method", amount_capturable=0)
        pi["last_payment_error"] = {"type": "card_error", "code": "card_declined"}
        return copy.deepcopy(pi)

    def capture_elsewhere(self, intent_id: str, card: str | None = None) -> Json:
        """Captured outside the app (dashboard, another process): status succeeded; paid with
        this card number if given (as authorize())."""
        pi = self.intents[intent_id]
        pi.update(status="succeeded", amount_received=pi["amount"], amount_capturable=0)
        if card is not None:
            pi["payment_method"] = self.card(card)
        return copy.deepcopy(pi)

    # ---- webhooks ---------------------------------------------------------------------------

    def event(
        self,
        kind: str,
        intent_id: str,
        *,
        event_id: str | None = None,
        **overrides: Any,
    ) -> bytes:
        """A webhook event body about the intent as it is now (fields can be overridden)."""
        intent = copy.deepcopy(self.intents[intent_id])
        intent.update(overrides)
        body = {
            "id": event_id or _new_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": intent},
        }
        return json.dumps(body).encode()

    def charge(self, intent_id: str) -> Json:
        """The intent's latest Charge as Stripe shows it: paid once authorised (`captured`
        false while the intent requires capture, true once it succeeded), the intent's metadata,
        and in `payment_method_details` the card that paid with its fingerprint (Stripe copies
        the PaymentMethod's card into the Charge; an intent paid with no card has none)."""
        pi = self.intents[intent_id]
        paid = pi["status"] in ("requires_capture", "succeeded")
        captured = pi["status"] == "succeeded" or bool(pi.get("refunded"))
        method = self.payment_methods.get(pi["payment_method"] or "")
        details: Json | None = None
        if method is not None:
            card = method["card"]
            details = {
                "type": "card",
                "card": {
                    "amount_authorized": pi["amount"],
                    "brand": card["brand"],
                    "last4": card["last4"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "fingerprint": card["fingerprint"],
                    "funding": "credit",
                    "network": card["brand"],
                },
            }
        return {
            "id": pi["latest_charge"],
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if captured else 0,
            "amount_refunded": pi["amount"] if pi.get("refunded") else 0,
            "captured": captured,
            "currency": pi["currency"],
            "paid": paid,
            "status": "succeeded" if paid else "pending",
            "payment_intent": intent_id,
            "payment_method": pi["payment_method"],
            "payment_method_details": details,
            "refunded": bool(pi.get("refunded")),
            "metadata": dict(pi["metadata"]),
            "livemode": False,
        }

    def charge_event(self, kind: str, intent_id: str, **overrides: Any) -> bytes:
        """A webhook event about the intent's charge (charge.succeeded once authorised,
        charge.refunded), as Stripe sends it: the object is a Charge naming its payment_intent
        (fields can be overridden)."""
        charge = self.charge(intent_id)
        charge.update(overrides)
        body = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": charge},
        }
        return json.dumps(body).encode()

    @staticmethod
    def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
        """A Stripe-Signature header, made by the stripe library's own helper."""
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode(), secret, timestamp
        )
        return str(header)

    # ---- handlers ---------------------------------------------------------------------------

    async def _serve(
        self, request: web.Request, action: Callable[[dict[str, str]], Json]
    ) -> web.Response:
        form = request.query if request.method == "GET" else await request.post()
        params = {k: str(v) for k, v in form.items()}
        key = request.headers.get("Idempotency-Key")
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.secret_key}":
            failure = StripeFailure(401, "invalid_request_error", "", "Invalid API Key provided")
            return await self._respond(
                request, params, key, failure.status, failure.body, False, notify=False
            )
        if key is not None and key in self._idempotent:
            path, first_params, status, body = self._idempotent[key]
            if path != request.path or first_params != params:
                failure = StripeFailure(
                    400,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
                return await self._respond(
                    request, params, key, failure.status, failure.body, False, notify=False
                )
            return await self._respond(request, params, key, status, body, True)
        try:
            status, body, kept = 200, action(params), True
        except StripeFailure as failure:
            status, body, kept = failure.status, failure.body, failure.executed
        if key is not None and kept:
            self._idempotent[key] = (request.path, params, status, body)
        return await self._respond(request, params, key, status, body, False)

    async def _respond(
        self,
        request: web.Request,
        params: dict[str, str],
        key: str | None,
        status: int,
        body: Json,
        replayed: bool,
        notify: bool = True,
    ) -> web.Response:
        """Record the request and answer it; `on_request` first sees it unless `notify` is off
        (refusals made before any action: bad key, idempotency conflict, unknown URL)."""
        recorded = self._record(request, params, key, status, body, replayed)
        if notify and self.on_request is not None:
            await self.on_request(recorded)
        return self._response(status, body, replayed)

    def _record(
        self,
        request: web.Request,
        params: dict[str, str],
        key: str | None,
        status: int,
        body: Json,
        replayed: bool,
    ) -> Recorded:
        recorded = Recorded(
            len(self.requests), request.method, request.path, params, key, status, replayed,
            copy.deepcopy(body),
        )  # fmt: skip
        self.requests.append(recorded)
        return recorded

    @staticmethod
    def _response(status: int, body: Json, replayed: bool) -> web.Response:
        headers = {"Request-Id": _new_id("req")}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return web.json_response(body, status=status, headers=headers)

    async def _unknown(self, request: web.Request) -> web.Response:
        body = {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}
        key = request.headers.get("Idempotency-Key")
        return await self._respond(request, {}, key, 404, body, False, notify=False)

    def _outage(self, operation: str) -> None:
        status = self.outage.get(operation)
        if status is not None:
            raise StripeFailure(
                status, "api_error", "", "An error occurred on Stripe's side.", executed=False
            )

    def _intent(self, request: web.Request) -> Json:
        intent_id = request.match_info["id"]
        pi = self.intents.get(intent_id)
        if pi is None:
            raise StripeFailure(
                404,
                "invalid_request_error",
                "resource_missing",
                f"No such payment_intent: '{intent_id}'",
            )
        return pi

    def _make_intent(self, params: dict[str, str], metadata: dict[str, str]) -> Json:
        try:
            amount = int(params["amount"])
            currency = params["currency"]
        except (KeyError, ValueError):
            raise StripeFailure(
                400, "invalid_request_error", "parameter_missing", "Missing required param"
            ) from None
        if amount < 1 or currency != currency.lower() or len(currency) != 3:
            raise StripeFailure(400, "invalid_request_error", "parameter_invalid", "bad amount")
        intent_id = _new_id("pi")
        pi: Json = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": currency,
            "capture_method": params.get("capture_method", "automatic"),
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "created": int(time.time()),
            "description": params.get("description"),
            "livemode": False,
            "metadata": metadata,
            "status": "requires_payment_method",
            "cancellation_reason": None,
            "last_payment_error": None,
            "latest_charge": _new_id("ch"),
            "payment_method": None,
            "automatic_payment_methods": (
                {"enabled": True}
                if params.get("automatic_payment_methods[enabled]") == "true"
                else None
            ),
        }
        self.intents[intent_id] = pi
        return copy.deepcopy(pi)

    async def _create_intent(self, request: web.Request) -> web.Response:
        return await self._serve(request, lambda p: self._make_intent(p, nested(p, "metadata")))

    async def _retrieve(self, request: web.Request) -> web.Response:
        def retrieve(params: dict[str, str]) -> Json:
            self._outage("retrieve")
            pi = copy.deepcopy(self._intent(request))
            expand = {v for k, v in params.items() if k == "expand" or k.startswith("expand[")}
            unknown = expand - {"payment_method"}
            if unknown:
                raise StripeFailure(
                    400, "invalid_request_error", "parameter_invalid", f"cannot expand {unknown}"
                )
            if "payment_method" in expand and pi["payment_method"] is not None:
                pi["payment_method"] = copy.deepcopy(self.payment_methods[pi["payment_method"]])
            return pi

        return await self._serve(request, retrieve)

    async def _capture(self, request: web.Request) -> web.Response:
        def capture(params: dict[str, str]) -> Json:
            self._outage("capture")
            pi = self._intent(request)
            if pi["status"] != "requires_capture":
                raise StripeFailure(
                    400,
                    "invalid_request_error",
                    "payment_intent_unexpected_state",
                    f"This PaymentIntent could not be captured because it has a status of "
                    f"{pi['status']}.",
                )
            pi.update(status="succeeded", amount_received=pi["amount"], amount_capturable=0)
            return copy.deepcopy(pi)

        return await self._serve(request, capture)

    async def _cancel(self, request: web.Request) -> web.Response:
        def cancel(params: dict[str, str]) -> Json:
            pi = self._intent(request)
            if pi["status"] not in CANCELABLE:
                raise StripeFailure(
                    400,
                    "invalid_request_error",
                    "payment_intent_unexpected_state",
                    f"You cannot cancel this PaymentIntent because it has a status of "
                    f"{pi['status']}.",
                )
            pi.update(
                status="canceled",
                amount_capturable=0,
                cancellation_reason=params.get("cancellation_reason"),
            )
            return copy.deepcopy(pi)

        return await self._serve(request, cancel)

    async def _refund(self, request: web.Request) -> web.Response:
        def refund(params: dict[str, str]) -> Json:
            pi = self.intents.get(params.get("payment_intent", ""))
            if pi is None:
                raise StripeFailure(
                    404, "invalid_request_error", "resource_missing", "No such payment_intent"
                )
            if pi["status"] != "succeeded":
                raise StripeFailure(
                    400,
                    "invalid_request_error",
                    "payment_intent_unexpected_state",
                    "This PaymentIntent does not have a successful charge to refund.",
                )
            if self.refund_refusal is not None:
                code, message = self.refund_refusal
                raise StripeFailure(400, "invalid_request_error", code, message)
            if pi.get("refunded"):
                raise StripeFailure(
                    400,
                    "invalid_request_error",
                    "charge_already_refunded",
                    f"Charge {pi['latest_charge']} has already been refunded.",
                )
            pi["refunded"] = True
            refund_id = _new_id("re")
            obj: Json = {
                "id": refund_id,
                "object": "refund",
                "amount": pi["amount"],
                "currency": pi["currency"],
                "payment_intent": pi["id"],
                "status": "succeeded",
                "metadata": nested(params, "metadata"),
            }
            self.refunds[refund_id] = obj
            return copy.deepcopy(obj)

        return await self._serve(request, refund)

"""Stripe webhooks, Stripe's side: verified on the raw body by the official library and
translated into a PaymentEvent. Settlement (server.booking.settlement) deduplicates and applies
it; nothing here touches an order.

Beyond the library's check: the signature header must be ASCII, its timestamp may be neither
more than TOLERANCE_S old nor more than TOLERANCE_S ahead, a verified event whose strings hold
a NUL (which PostgreSQL cannot store) is refused and logged, and an event whose own livemode
and its PaymentIntent's disagree is a mismatch."""

from __future__ import annotations

import logging
import time

import msgspec
import stripe

from server.core.errors import BadRequest
from server.payments import PaymentEvent, PaymentKind

KINDS: dict[str, PaymentKind] = {
    "payment_intent.amount_capturable_updated": "authorised",  # capture after commit
    "payment_intent.succeeded": "captured",  # captured already (e.g. elsewhere)
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
    "charge.refunded": "refunded",  # a Charge object: its payment_intent names the payment
}


class IntentObject(msgspec.Struct):
    """A PaymentIntent, or for charge.* events a Charge (which names its payment_intent)."""

    id: str
    amount: int = 0
    currency: str = ""
    status: str = ""
    metadata: dict[str, str] = {}
    livemode: bool = False
    payment_intent: str | None = None
    refunded: bool = False  # a Charge refunded in full


class EventData(msgspec.Struct):
    object: IntentObject


class StripeEvent(msgspec.Struct):
    id: str
    type: str
    data: EventData
    livemode: bool = False


_decode = msgspec.json.Decoder(StripeEvent)
log = logging.getLogger("boxoffice.webhooks")

TOLERANCE_S = 300


def _signed_at(signature: str) -> int:
    """The header's timestamp, read as the stripe library reads it (the first `t=`)."""
    return int(next(i.split("=", 2)[1] for i in signature.split(",") if i.startswith("t=")))


def verify(raw: bytes, signature: str | None, secret: str) -> None:
    if not signature:
        raise BadRequest("missing Stripe-Signature header", code="bad_signature")
    refused = BadRequest("webhook signature does not verify", code="bad_signature")
    if not signature.isascii():  # the library's compare_digest raises TypeError on non-ASCII
        raise refused
    try:
        stripe.WebhookSignature.verify_header(raw.decode(), signature, secret, TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise refused from None
    if _signed_at(signature) > time.time() + TOLERANCE_S:
        raise BadRequest("webhook timestamp is in the future", code="bad_signature")


def _strings(event: StripeEvent) -> list[str]:
    """Every string of the event that reaches PostgreSQL or a log line."""
    intent = event.data.object
    return [
        event.id, event.type, intent.id, intent.currency, intent.status,
        *intent.metadata, *intent.metadata.values(),
    ]  # fmt: skip


def parse(raw: bytes, signature: str | None, secret: str) -> PaymentEvent | str:
    """The payment event of a verified webhook, or why it is ignored ("ignored_…")."""
    verify(raw, signature, secret)
    try:
        event = _decode.decode(raw)
    except msgspec.MsgspecError:
        return "ignored_unparsed"  # a verified event of a shape we do not use
    kind = KINDS.get(event.type)
    if kind is None:
        return "ignored_type"
    if any("\x00" in text for text in _strings(event)):
        log.warning("signed webhook holds a NUL character", extra={"event": repr(event.id)})
        raise BadRequest("webhook event holds a NUL character", code="malformed_webhook")
    intent = event.data.object
    if intent.livemode != event.livemode:
        log.error("webhook and its PaymentIntent disagree on livemode", extra={"event": event.id})
        return "mismatch"
    payment_id = intent.id
    if kind == "refunded":
        if not intent.payment_intent:
            return "ignored_no_payment_intent"
        if not intent.refunded:
            return "ignored_partial_refund"  # only whole orders are refunded
        payment_id = intent.payment_intent
    return PaymentEvent(
        provider="stripe",
        event_id=event.id,
        kind=kind,
        payment_id=payment_id,
        order_id=intent.metadata.get("order_id", ""),
        amount=intent.amount,
        currency=intent.currency.upper(),
        livemode=event.livemode,
    )

"""Stripe webhooks, Stripe's side: verified on the raw body by the official library and
translated into a PaymentEvent. Settlement (server.booking.settlement) deduplicates and applies
it; nothing here touches an order.

Beyond the library's check: the signature header must be ASCII, its timestamp may be neither
more than TOLERANCE_S old nor more than TOLERANCE_S ahead, a verified event whose strings hold
a NUL (which PostgreSQL cannot store) is refused and logged, and an event whose own livemode
and its PaymentIntent's disagree is a mismatch.

A `charge.succeeded` event (authorised, or captured already) carries the fingerprint of the card
that paid in its `payment_method_details`, so settlement confirms it without asking Stripe;
`payment_intent.amount_capturable_updated` names the PaymentMethod only, and settlement reads
the card from Stripe before deciding. Whichever of the two arrives first confirms the order;
the other finds it paid."""

from __future__ import annotations

import logging
import time

import msgspec
import stripe

from server.core.errors import BadRequest
from server.payments import PaymentEvent, PaymentKind
from server.payments.stripe_provider import FINGERPRINT

KINDS: dict[str, PaymentKind] = {
    # A Charge authorised (captured: false, capture after commit) or captured already; it
    # carries the card's fingerprint, so no read of the PaymentMethod is needed.
    "charge.succeeded": "authorised",
    "payment_intent.amount_capturable_updated": "authorised",  # names the PaymentMethod only
    "payment_intent.succeeded": "captured",  # captured already (e.g. elsewhere)
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
    "charge.refunded": "refunded",  # a Charge object: its payment_intent names the payment
}
CHARGES = {"charge.succeeded", "charge.refunded"}  # about a Charge: the payment is its intent


class Card(msgspec.Struct):
    fingerprint: str | None = None


class MethodDetails(msgspec.Struct):
    """A Charge's `payment_method_details`: which kind of method paid, and for a card, which."""

    type: str = ""
    card: Card | None = None


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
    captured: bool = False  # a Charge: captured (else authorised only)
    paid: bool = False  # a Charge: succeeded or authorised for a later capture
    payment_method_details: MethodDetails | None = None  # a Charge: what paid


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
        *intent.metadata, *intent.metadata.values(), intent.payment_intent or "",
    ]  # fmt: skip


def _card(charge: IntentObject) -> str | msgspec.UnsetType | None:
    """The fingerprint of the card that paid a Charge; None if no card paid; UNSET if the
    Charge does not say (settlement then asks Stripe)."""
    details = charge.payment_method_details
    if details is None:
        return msgspec.UNSET
    if details.type != "card" or details.card is None or details.card.fingerprint is None:
        return None  # not a card: the email alone counts, as for a PaymentMethod with no card
    if not FINGERPRINT.fullmatch(details.card.fingerprint):
        raise BadRequest("webhook card fingerprint of an unknown shape", code="malformed_webhook")
    return details.card.fingerprint


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
    card: str | msgspec.UnsetType | None = msgspec.UNSET
    if event.type in CHARGES:
        if not intent.payment_intent:
            return "ignored_no_payment_intent"
        payment_id = intent.payment_intent
    if kind == "refunded" and not intent.refunded:
        return "ignored_partial_refund"  # only whole orders are refunded
    if event.type == "charge.succeeded":
        if not intent.paid:
            return "ignored_unpaid"
        kind = "captured" if intent.captured else "authorised"
        card = _card(intent)
    return PaymentEvent(
        provider="stripe",
        event_id=event.id,
        kind=kind,
        payment_id=payment_id,
        order_id=intent.metadata.get("order_id", ""),
        amount=intent.amount,
        currency=intent.currency.upper(),
        livemode=event.livemode,
        card=card,
    )

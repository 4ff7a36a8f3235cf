"""Stripe webhooks, Stripe's side: verified on the raw body by the official library and
translated into a PaymentEvent. Settlement (server.booking.settlement) deduplicates and applies
it; nothing here touches an order."""

from __future__ import annotations

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


def verify(raw: bytes, signature: str | None, secret: str) -> None:
    if not signature:
        raise BadRequest("missing Stripe-Signature header", code="bad_signature")
    try:
        stripe.WebhookSignature.verify_header(raw.decode(), signature, secret, 300)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise BadRequest("webhook signature does not verify", code="bad_signature") from None


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
    intent = event.data.object
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

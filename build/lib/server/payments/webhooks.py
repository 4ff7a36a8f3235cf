"""Stripe webhooks: verified on the raw body by the official library, deduplicated by event id
in PostgreSQL, applied through state guards. Unknown orders answer 503 so Stripe retries."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
import stripe

from server.booking import ledger
from server.core.errors import BadRequest, Unavailable
from server.core.keys import EventKeys

if TYPE_CHECKING:
    from server.booking.service import Booking

log = logging.getLogger("boxoffice.webhooks")

HANDLED = {
    "payment_intent.succeeded",
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
}


class IntentObject(msgspec.Struct):
    id: str
    amount: int = 0
    currency: str = ""
    status: str = ""
    metadata: dict[str, str] = {}
    livemode: bool = False


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


async def handle(booking: Booking, raw: bytes, signature: str | None) -> str:
    """Apply one webhook; returns what was done (for logs and tests)."""
    verify(raw, signature, booking.settings.stripe_webhook_secret)
    try:
        event = _decode.decode(raw)
    except msgspec.MsgspecError:
        return "ignored_unparsed"  # a verified event of a shape we do not use
    if event.type not in HANDLED:
        return "ignored_type"
    pool = booking.pool
    if await ledger.seen_stripe_event(pool, event.id):
        return "duplicate"
    intent = event.data.object
    order = await ledger.get_order_by_payment(pool, intent.id)
    if order is None:
        order_id = intent.metadata.get("order_id", "")
        order = await ledger.get_order(pool, order_id) if order_id else None
    if order is None:
        # The order row may not be visible yet (webhook raced our commit): ask Stripe to retry.
        raise Unavailable(
            "order not known yet; retry later", code="order_not_ready", retry_after=10
        )
    livemode = getattr(booking.provider, "livemode", False)
    if (
        event.livemode != livemode
        or intent.amount != order.amount
        or intent.currency.upper() != order.currency
        or (order.payment_id is not None and order.payment_id != intent.id)
    ):
        log.error("webhook does not match order", extra={"event": event.id, "order_id": order.id})
        await ledger.record_stripe_event(pool, event.id, event.type)
        return "mismatch"
    if order.payment_id is None:
        await ledger.set_payment(pool, order.id, intent.id, None)
    result = await _apply(booking, event.type, order)
    await ledger.record_stripe_event(pool, event.id, event.type)
    return result


async def _apply(booking: Booking, kind: str, order: ledger.OrderRow) -> str:
    if kind in ("payment_intent.amount_capturable_updated", "payment_intent.succeeded"):
        if order.status == "paid":
            return "already_paid"
        if order.status != "pending":
            return f"ignored_{order.status}"
        # amount_capturable_updated: authorised, capture after commit. succeeded: captured
        # already (e.g. captured elsewhere); a lost race must then be refunded by ops.
        row = await booking.payment_succeeded(order, captured=kind == "payment_intent.succeeded")
        return row.status
    if kind == "payment_intent.payment_failed":
        failed = await booking.payment_failed(order, "payment_failed")
        return "failed" if failed is not None else f"ignored_{order.status}"
    if kind == "payment_intent.canceled":
        changed = await ledger.change_status(booking.pool, order.id, "voided", "payment_canceled")
        if changed is not None:
            await booking.inventory.release(EventKeys(order.event_id), order.hold_id)
        return "voided" if changed is not None else f"ignored_{order.status}"
    return "ignored_type"

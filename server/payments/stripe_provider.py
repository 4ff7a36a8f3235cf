"""Stripe PaymentIntents through the official library: manual capture, idempotency keys, and the
confirming card's fingerprint."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import stripe

from server.core.settings import Settings
from server.payments import Intent, PaymentError, ProviderName

FINGERPRINT = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Stripe's are 16 letters and digits


class StripeProvider:
    name: ProviderName = "stripe"

    def __init__(self, settings: Settings) -> None:
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self._http = stripe.AIOHTTPClient()
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses=base,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=2,
        )
        self.livemode = settings.stripe_secret_key.startswith("sk_live_")

    async def create(
        self, *, order_id: str, hold_id: str, event_id: str, amount: int, currency: str
    ) -> Intent | None:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "capture_method": "manual",
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {"order_id": order_id, "hold_id": hold_id, "event_id": event_id},
                    "description": f"Boxoffice order {order_id}",
                },
                options={"idempotency_key": f"boxoffice-order-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise PaymentError(f"stripe refused the payment: {exc.user_message or exc}") from exc
        return Intent(intent.id, intent.client_secret)

    async def card_fingerprint(self, payment_id: str) -> str | None:
        """`card.fingerprint` of the PaymentMethod that confirmed the intent (Stripe's webhook
        names the PaymentMethod only, so the intent is read with it expanded)."""
        try:
            intent = await self._raw("get", payment_id, "", expand=["payment_method"])
        except stripe.StripeError as exc:
            raise PaymentError(f"stripe did not answer for the payment method: {exc}") from exc
        method = intent.get("payment_method") if isinstance(intent, dict) else None
        card = method.get("card") if isinstance(method, dict) else None
        fingerprint = card.get("fingerprint") if isinstance(card, dict) else None
        if fingerprint is None:
            return None  # not a card (or no payment method): the email alone counts
        if not isinstance(fingerprint, str) or not FINGERPRINT.fullmatch(fingerprint):
            raise PaymentError("stripe sent a card fingerprint of an unknown shape")
        return fingerprint

    async def capture(self, payment_id: str, order_id: str) -> None:
        try:
            await self._raw(
                "post", payment_id, "/capture", idempotency_key=f"boxoffice-capture-{order_id}"
            )
        except stripe.StripeError as exc:
            raise PaymentError(str(exc)) from exc

    async def void(self, payment_id: str, order_id: str) -> None:
        try:
            await self._client.v1.payment_intents.cancel_async(
                payment_id, options={"idempotency_key": f"boxoffice-void-{order_id}"}
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "payment_intent_unexpected_state":
                return  # already canceled (or never authorised): nothing to void
            raise PaymentError(str(exc)) from exc
        except stripe.StripeError as exc:
            raise PaymentError(str(exc)) from exc

    async def refund(self, payment_id: str, order_id: str, attempt: int = 0) -> None:
        # Stripe replays a refused request's answer for the same key: a retry after a refusal
        # needs the next key. Two refunds cannot both succeed (the second is refused as
        # charge_already_refunded, which means the money is back).
        key = f"boxoffice-refund-{order_id}" + (f"-{attempt}" if attempt else "")
        try:
            await self._client.v1.refunds.create_async(
                {"payment_intent": payment_id, "metadata": {"order_id": order_id}},
                options={"idempotency_key": key},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "charge_already_refunded":
                return
            raise PaymentError(exc.user_message or str(exc)) from exc
        except stripe.StripeError as exc:
            raise PaymentError(str(exc)) from exc

    async def _raw(self, method: str, payment_id: str, action: str, **params: Any) -> Any:
        """A PaymentIntent request through the library's raw request: the same transport,
        retries, idempotency and StripeError mapping as its typed services, without building
        a StripeObject tree that nothing reads (a third of a confirmation's Stripe CPU).
        Returns the decoded JSON answer."""
        url = f"/v1/payment_intents/{quote(payment_id, safe='')}{action}"
        response = await self._client.raw_request_async(method, url, **params)
        return response.data

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

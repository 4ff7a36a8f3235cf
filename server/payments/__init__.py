"""Payment providers: the built-in `dev` provider and Stripe, behind one small interface."""

from __future__ import annotations

from typing import Protocol

import msgspec

from server.core.settings import Settings


class PaymentError(Exception):
    """The provider refused or could not be reached; the caller decides whether to retry."""


class Intent(msgspec.Struct, frozen=True):
    id: str
    client_secret: str | None


class Provider(Protocol):
    name: str

    async def create(
        self, *, order_id: str, hold_id: str, event_id: str, amount: int, currency: str
    ) -> Intent | None: ...

    async def capture(self, payment_id: str, order_id: str) -> None: ...

    async def void(self, payment_id: str, order_id: str) -> None: ...

    async def refund(self, payment_id: str, order_id: str) -> None: ...

    async def close(self) -> None: ...


def make_provider(settings: Settings) -> Provider:
    if settings.stripe_secret_key:
        from server.payments.stripe_provider import StripeProvider

        return StripeProvider(settings)
    from server.payments.dev import DevProvider

    return DevProvider()

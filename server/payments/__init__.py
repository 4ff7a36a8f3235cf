"""Payments: the provider interface (create, card fingerprint, capture, void, refund), the dev and Stripe providers.

The registry picks the provider of each order; Stripe's webhooks become PaymentEvents that
settlement (server.booking) applies. Settlement calls providers through this interface;
nothing here imports booking.

May import: core.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

ProviderName = Literal["dev", "stripe"]


class PaymentError(Exception):
    """The provider refused or could not be reached; the caller decides whether to retry."""


class Intent(msgspec.Struct, frozen=True):
    id: str
    client_secret: str | None


class Provider(Protocol):
    name: ProviderName
    livemode: bool  # real money moves (Stripe live keys); reports must say the same

    async def create(
        self, *, order_id: str, hold_id: str, event_id: str, amount: int, currency: str
    ) -> Intent | None: ...

    async def card_fingerprint(self, payment_id: str) -> str | None:
        """The provider's fingerprint of the card that paid (the same for every payment with one
        card number), for the per-buyer limit; None when the provider gives none (the dev
        provider, a payment method that is not a card). PaymentError if it cannot be asked."""
        ...

    async def capture(self, payment_id: str, order_id: str) -> None: ...

    async def void(self, payment_id: str, order_id: str) -> None: ...

    async def refund(self, payment_id: str, order_id: str, attempt: int = 0) -> None:
        """Refund the whole payment; `attempt` counts earlier refusals (a provider that replays
        an idempotent answer needs a new key to try again). Already refunded is success."""
        ...

    async def close(self) -> None: ...


PaymentKind = Literal["authorised", "captured", "failed", "canceled", "refunded"]


class PaymentEvent(msgspec.Struct, frozen=True):
    """What a provider reports about one payment, in the provider's own words translated:
    settlement applies it to the order, whichever provider sent it."""

    provider: ProviderName
    event_id: str  # the provider's id of this report (deduplicated)
    kind: PaymentKind
    payment_id: str
    order_id: str  # from the payment's metadata; "" when absent
    amount: int
    currency: str  # upper case, as orders store it
    livemode: bool
    # The provider's fingerprint of the card that paid, when the report itself says it (None:
    # it says the payment method is no card); UNSET when it does not, and settlement asks the
    # provider (Provider.card_fingerprint) before deciding.
    card: str | msgspec.UnsetType | None = msgspec.UNSET

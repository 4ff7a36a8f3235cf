"""The offline provider: no money moves; POST /api/orders/{id}/pay with a test card decides."""

from __future__ import annotations

from typing import Literal

from server.payments import Intent, ProviderName

APPROVED_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


def card_outcome(card: str) -> Literal["approved", "declined", "unknown"]:
    digits = card.replace(" ", "")
    if digits == APPROVED_CARD:
        return "approved"
    if digits == DECLINED_CARD:
        return "declined"
    return "unknown"


class DevProvider:
    name: ProviderName = "dev"
    livemode = False

    async def create(
        self, *, order_id: str, hold_id: str, event_id: str, amount: int, currency: str
    ) -> Intent | None:
        return None

    async def card_fingerprint(self, payment_id: str) -> str | None:
        return None  # a test card is no card: the per-buyer limit counts the email alone

    async def capture(self, payment_id: str, order_id: str) -> None:
        return None

    async def void(self, payment_id: str, order_id: str) -> None:
        return None

    async def refund(self, payment_id: str, order_id: str, attempt: int = 0) -> None:
        return None

    async def close(self) -> None:
        return None

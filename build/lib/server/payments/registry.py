"""The providers of one deployment: the one new orders use, and every provider by name so an
order is always captured, voided or refunded where it was paid."""

from __future__ import annotations

from server.core.settings import Settings
from server.payments import Provider
from server.payments.dev import DevProvider


class Providers:
    def __init__(self, current: Provider, *others: Provider) -> None:
        self.current = current  # new orders are paid here
        self._by_name: dict[str, Provider] = {p.name: p for p in (current, *others)}

    def of(self, name: str) -> Provider | None:
        """The provider an order was created with; None if this deployment no longer has it."""
        return self._by_name.get(name)

    async def close(self) -> None:
        for provider in self._by_name.values():
            await provider.close()


def make_providers(settings: Settings) -> Providers:
    """Stripe when configured; the `dev` provider (no money moves) only in dev mode."""
    if settings.stripe_secret_key:
        from server.payments.stripe_provider import StripeProvider

        stripe_provider = StripeProvider(settings)
        if settings.mode == "dev":
            return Providers(stripe_provider, DevProvider())
        return Providers(stripe_provider)
    if settings.mode != "dev":
        raise RuntimeError("production mode needs a real payment provider (STRIPE_SECRET_KEY)")
    return Providers(DevProvider())

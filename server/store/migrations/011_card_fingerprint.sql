-- The payment provider's fingerprint of the card that paid an order (Stripe's card.fingerprint,
-- the same for every payment with one card number), written when the payment is confirmed:
-- the per-buyer limit counts an event's paid tickets by email and by card
-- (server/core/rules.py buyer_limit_passed_by). NULL when the provider gave none (dev).
ALTER TABLE orders ADD COLUMN card_fingerprint text
    CHECK (card_fingerprint ~ '^[A-Za-z0-9_-]{1,64}$');
CREATE INDEX orders_paid_card ON orders (event_id, card_fingerprint)
    WHERE status = 'paid' AND card_fingerprint IS NOT NULL;

-- After the sale: orders that open from a secret link, refunds, and check-in at the door.

-- The secret of a paid order's link (/orders/<id>?key=<order_key>): 128 random bits, set in the
-- transaction that makes the order paid. Orders paid before this migration get one here.
ALTER TABLE orders ADD COLUMN order_key text;
ALTER TABLE orders ADD COLUMN refunded_at timestamptz;
-- Refunds the provider refused so far: the next attempt goes under a new idempotency key.
ALTER TABLE orders ADD COLUMN refund_attempts integer NOT NULL DEFAULT 0;
UPDATE orders SET order_key = replace(gen_random_uuid()::text, '-', '')
 WHERE status IN ('paid', 'refunded') AND order_key IS NULL;
CREATE INDEX orders_email ON orders (lower(email));
CREATE INDEX orders_event_status ON orders (event_id, status);
CREATE INDEX order_lines_seat ON order_lines (event_id, seat_id) WHERE seat_id IS NOT NULL;

-- A ticket is admitted once: a guarded UPDATE … WHERE checked_in_at IS NULL decides.
ALTER TABLE tickets ADD COLUMN checked_in_at timestamptz;
CREATE INDEX tickets_event ON tickets (event_id);

-- Every scan at the door, whatever its outcome.
CREATE TABLE checkin_log (
    id       bigserial PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    who      text NOT NULL,
    result   text NOT NULL
             CHECK (result IN ('admitted', 'already_checked_in', 'ticket_refunded',
                               'wrong_event', 'invalid_ticket')),
    code     text NOT NULL,
    order_id text
);
CREATE INDEX checkin_log_event ON checkin_log (event_id, id DESC);

-- Per-buyer ticket limit across the orders of an event. NULL: the event's max_seats_per_order
-- (server/core/rules.py buyer_limit), so splitting a purchase into orders buys nothing more.
ALTER TABLE events ADD COLUMN max_tickets_per_buyer integer
    CHECK (max_tickets_per_buyer >= 1 AND max_tickets_per_buyer <= 200);

-- The buyer an order counts against: its email normalised by rules.buyer_email (written at
-- checkout). Orders from before this migration get the lower-cased, trimmed email.
ALTER TABLE orders ADD COLUMN buyer text;
UPDATE orders SET buyer = lower(btrim(email)) WHERE buyer IS NULL;
ALTER TABLE orders ALTER COLUMN buyer SET NOT NULL;
CREATE INDEX orders_paid_buyer ON orders (event_id, buyer) WHERE status = 'paid';
CREATE INDEX orders_paid_visitor ON orders (event_id, visitor_id) WHERE status = 'paid';

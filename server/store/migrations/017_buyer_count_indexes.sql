-- The per-buyer limit counts an event's paid tickets by buyer, by visitor and by card
-- (booking/ledger.py paid_tickets). Those counts read the buyer's (visitor's, card's) orders by
-- their own index and sum the paid ones, so that no plan depends on how many orders the planner
-- believes are paid. With indexes partial on status = 'paid', a partition analyzed before its
-- first sale (every order pending) made every "paid orders of this event" path look one row
-- long, and the plan kept walked all of the event's paid orders per count: 999 buffers per
-- confirmation at 1,000 orders, growing with the sale.
-- The partial indexes of 009 and 011 were copied under names PostgreSQL chose (v014): they are
-- found by what they index.
DO $$
DECLARE
    old regclass;
BEGIN
    FOR old IN
        SELECT indexrelid::regclass FROM pg_index
        WHERE indrelid = 'orders'::regclass AND pg_get_indexdef(indexrelid) ~ (
            'USING btree \(event_id, (buyer|visitor_id|card_fingerprint)\)'
            || ' WHERE \(+status = ''paid''::text\)')
    LOOP
        EXECUTE format('DROP INDEX %s', old);
    END LOOP;
END
$$;
CREATE INDEX orders_buyer ON orders (event_id, buyer);
CREATE INDEX orders_visitor ON orders (event_id, visitor_id);
CREATE INDEX orders_card ON orders (event_id, card_fingerprint)
    WHERE card_fingerprint IS NOT NULL;

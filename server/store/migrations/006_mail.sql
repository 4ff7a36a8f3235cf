-- Mail: one row per mail that must go out, claimed before sending and marked sent after
-- (server/notify/ledger.py). A confirmation is unique per order; a resend per outbox row.
CREATE TABLE mails (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('confirmation', 'resend')),
    order_id    text REFERENCES orders (id) ON DELETE CASCADE,
    outbox_id   bigint UNIQUE,
    email       text NOT NULL,
    state       text NOT NULL DEFAULT 'due'
                CHECK (state IN ('due', 'sending', 'sent', 'failed', 'skipped')),
    attempts    integer NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error  text,
    message_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (order_id, kind),
    CHECK ((kind = 'confirmation') = (order_id IS NOT NULL)),
    CHECK ((kind = 'resend') = (outbox_id IS NOT NULL))
);
-- What the sender looks at: mails not finished yet.
CREATE INDEX mails_open ON mails (due_at) WHERE state IN ('due', 'sending');

-- The catch-up sweep finds recently paid orders without a confirmation row, and resend
-- requests (outbox rows of kind 'resend') without a mail row.
CREATE INDEX orders_paid_at_for_mail ON orders (paid_at) WHERE status = 'paid';
CREATE INDEX outbox_resend_for_mail ON outbox (id) WHERE kind = 'resend';
-- A resend lists the paid orders of one address.
CREATE INDEX orders_paid_email_for_mail ON orders (lower(email)) WHERE status = 'paid';

-- Seats, orders and payments. PostgreSQL is the final arbiter: the primary key of sold_seats
-- and the CHECK on ga_sales make a double sale impossible whatever Redis says.
CREATE TABLE seats (
    event_id   text NOT NULL,
    id         text NOT NULL,
    section_id text NOT NULL,
    row_no     integer NOT NULL,
    seat_no    integer NOT NULL,
    PRIMARY KEY (event_id, id),
    FOREIGN KEY (event_id, section_id) REFERENCES sections (event_id, id) ON DELETE CASCADE
);

CREATE TABLE ga_sales (
    event_id   text NOT NULL,
    section_id text NOT NULL,
    capacity   integer NOT NULL CHECK (capacity > 0),
    sold       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, section_id),
    FOREIGN KEY (event_id, section_id) REFERENCES sections (event_id, id) ON DELETE CASCADE,
    CHECK (sold >= 0 AND sold <= capacity)
);

CREATE TABLE orders (
    id            text PRIMARY KEY,
    event_id      text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    hold_id       text NOT NULL UNIQUE,
    visitor_id    text NOT NULL,
    queue_id      text NOT NULL,
    email         text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'paid', 'expired', 'failed', 'voided', 'refunded')),
    amount        integer NOT NULL CHECK (amount >= 0),
    currency      char(3) NOT NULL,
    provider      text NOT NULL CHECK (provider IN ('dev', 'stripe')),
    payment_id    text UNIQUE,
    client_secret text,
    expires_at    timestamptz NOT NULL,
    status_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    paid_at       timestamptz
);
CREATE INDEX orders_pending_expiry ON orders (expires_at) WHERE status = 'pending';

-- What an order is for: one line per assigned seat, or one line per standing section.
CREATE TABLE order_lines (
    order_id   text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no    integer NOT NULL,
    event_id   text NOT NULL,
    section_id text NOT NULL,
    seat_id    text,
    quantity   integer NOT NULL CHECK (quantity > 0),
    price      integer NOT NULL CHECK (price >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- The arbiter: a seat can be sold once per event, ever.
CREATE TABLE sold_seats (
    event_id text NOT NULL,
    seat_id  text NOT NULL,
    order_id text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sold_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, seat_id),
    FOREIGN KEY (event_id, seat_id) REFERENCES seats (event_id, id) ON DELETE CASCADE
);

CREATE TABLE tickets (
    code       text PRIMARY KEY,
    order_id   text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    event_id   text NOT NULL,
    section_id text NOT NULL,
    seat_id    text,
    number     integer NOT NULL,
    UNIQUE (order_id, number)
);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Payments that must be voided or refunded because the seats were gone (or captured late).
CREATE TABLE payment_actions (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    action      text NOT NULL CHECK (action IN ('capture', 'void', 'refund')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    UNIQUE (order_id, action)
);

-- Events and their sections. Queue settings live here (the truth); Redis mirrors them live.
CREATE TABLE events (
    id                  text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    name                text NOT NULL,
    venue               text NOT NULL,
    starts_at           timestamptz NOT NULL,
    sale_starts_at      timestamptz NOT NULL,
    prequeue_opens_at   timestamptz NOT NULL,
    currency            char(3) NOT NULL,
    rate_per_min        integer NOT NULL CHECK (rate_per_min >= 0),
    max_active          integer NOT NULL CHECK (max_active >= 1),
    session_minutes     integer NOT NULL CHECK (session_minutes >= 1),
    hold_minutes        integer NOT NULL CHECK (hold_minutes >= 1),
    max_seats_per_order integer NOT NULL CHECK (max_seats_per_order >= 1),
    paused              boolean NOT NULL DEFAULT false,
    closed              boolean NOT NULL DEFAULT false,
    sold_out            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (prequeue_opens_at <= sale_starts_at)
);

CREATE TABLE sections (
    event_id      text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    id            text NOT NULL,
    position      integer NOT NULL,
    name          text NOT NULL,
    price         integer NOT NULL CHECK (price >= 0),
    rows          integer CHECK (rows > 0),
    seats_per_row integer CHECK (seats_per_row > 0),
    capacity      integer NOT NULL CHECK (capacity > 0),
    PRIMARY KEY (event_id, id),
    CHECK ((rows IS NULL) = (seats_per_row IS NULL)),
    CHECK (rows IS NULL OR capacity = rows * seats_per_row)
);

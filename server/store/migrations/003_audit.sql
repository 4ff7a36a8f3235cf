-- The ops console: an audit trail of every settings change, and per-event autopilot settings.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    event_id   text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    who        text NOT NULL,
    action     text NOT NULL,
    field      text NOT NULL,
    old_value  jsonb,
    new_value  jsonb,
    note       text
);
CREATE INDEX audit_log_event ON audit_log (event_id, id DESC);

-- Autopilot: off unless an operator turns it on; bounds are the operator's.
CREATE TABLE autopilot (
    event_id           text PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    enabled            boolean NOT NULL DEFAULT false,
    target_fraction    double precision NOT NULL DEFAULT 0.9
                       CHECK (target_fraction > 0 AND target_fraction <= 1),
    min_rate           integer NOT NULL DEFAULT 0 CHECK (min_rate >= 0),
    max_rate           integer NOT NULL DEFAULT 6000 CHECK (max_rate >= min_rate),
    max_step_fraction  double precision NOT NULL DEFAULT 0.25
                       CHECK (max_step_fraction > 0 AND max_step_fraction <= 1),
    horizon_seconds    integer NOT NULL DEFAULT 60 CHECK (horizon_seconds >= 5),
    paused_by_autopilot boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

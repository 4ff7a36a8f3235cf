-- Each time an event's live state is mirrored into a Redis that lacks it (a new event, or Redis
-- lost its data), it starts a new epoch: places signed in an earlier one can be taken back.
ALTER TABLE events ADD COLUMN IF NOT EXISTS redis_epoch integer NOT NULL DEFAULT 0;

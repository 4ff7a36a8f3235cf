-- The venue's time zone (an IANA name such as Europe/Berlin): fan pages and mails show the
-- event's times in it, with the zone named. Checked against the zone database by the API.
ALTER TABLE events ADD COLUMN timezone text NOT NULL DEFAULT 'UTC';

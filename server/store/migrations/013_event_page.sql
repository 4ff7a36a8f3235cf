-- What the event page shows besides name, venue and times: a description (plain text, line
-- breaks kept) and an image (an https URL or a path on this site). Both optional; checked by
-- the API (server/core/messages.py: Description, ImageUrl).
ALTER TABLE events ADD COLUMN description text, ADD COLUMN image_url text;

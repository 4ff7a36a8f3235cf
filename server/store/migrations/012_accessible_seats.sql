-- Accessible seats (wheelchair spaces and the like): an attribute of an assigned seat that ops
-- set at creation (sections[].accessible) or later (PATCH /api/admin/events/{id}/seats). The
-- partial index serves the per-event read of the (few) accessible seats.
ALTER TABLE seats ADD COLUMN accessible boolean NOT NULL DEFAULT false;
CREATE INDEX seats_accessible ON seats (event_id) WHERE accessible;

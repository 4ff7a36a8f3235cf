-- Bot challenge (proof of work) at join, per event: off, adaptive (the default) or always.
ALTER TABLE events ADD COLUMN challenge text NOT NULL DEFAULT 'adaptive'
    CHECK (challenge IN ('off', 'adaptive', 'always'));

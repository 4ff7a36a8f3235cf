"""Running a sale: the event catalog, the live feed, the autopilot and the admin and console routes."""

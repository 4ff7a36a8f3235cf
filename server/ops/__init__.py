"""Running a sale: the event catalog, live feed, autopilot, and the admin and console routes.

May import: core, store, waiting, booking, payments, assets.
"""

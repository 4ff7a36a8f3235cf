"""Mail to fans: the confirmation of a paid order (and resends), sent exactly once per order.

May import: core, store, booking.
"""

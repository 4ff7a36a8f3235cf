"""The waiting room: join, status and leave, the admission step, websocket fan-out, queue routes.

May import: core, store.
"""

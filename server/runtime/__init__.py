"""Wiring and processes: create_app, background tasks, the process stack, NGINX, embedded servers, CLI.

May import: core, store, waiting, booking, payments, ops, notify, assets.
"""

"""Wiring and processes: create_app, background tasks, the process stack, NGINX rendering, embedded servers and the command line."""

"""Redis and PostgreSQL access every domain shares: clients, Lua registry, migrations, events, audit.

May import: core, assets.
"""

"""What every domain shares: Redis and PostgreSQL access, and the shipped message catalogs.

Clients, the Lua registry, migrations, events, audit; the catalogs of static/i18n.

May import: core, assets.
"""

"""Redis and PostgreSQL access shared by every domain: clients, the Lua script registry, migrations, event rows and the audit table."""

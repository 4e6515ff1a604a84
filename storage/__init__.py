"""Postgres schema management (migrations, day partitions) and, later, cold storage."""

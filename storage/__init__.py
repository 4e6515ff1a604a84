"""Postgres schema management (migrations, day partitions) and, later, cold storage."""

# The rules' build (compiled or interpreted) is decided when mediation is
# first imported, and storage.stored_records is one of the compiled
# modules: import mediation first, so the switch is in place before it loads.
import mediation  # noqa: F401

"""Bytewax sinks: Postgres record writer and the dead-letter topic."""

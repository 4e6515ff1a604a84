"""Replay: re-reading stored inputs and recomputing closing records."""

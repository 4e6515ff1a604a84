"""Bytewax dataflows: dedup, attribution and windowed closure of opportunities."""

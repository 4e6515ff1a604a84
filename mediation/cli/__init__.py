"""The ``mediation`` command line: a registry of small commands (see ``main``)."""

from .app import main

__all__ = ["main"]

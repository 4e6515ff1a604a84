# PYTHON_ARGCOMPLETE_OK  (the mark argcomplete's global activation looks for)
"""The ``mediation`` command line: a registry of small commands (``mediation.cli.commands``).

``main`` (``mediation.cli.base``) parses, runs one command and turns its
errors into one line and an exit status (``mediation.cli.status_codes``).
"""

from mediation.cli.base import main

__all__ = ["main"]

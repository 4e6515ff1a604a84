"""Errors the command line raises itself; ``mediation.cli.base`` turns them into exit statuses."""

from __future__ import annotations

from mediation.errors import InputError, ServiceError

__all__ = ["InputFileError", "NotFoundError", "RedriveUnconfirmedError", "UsageError"]


class UsageError(InputError):
    """Flags that argparse accepts one by one but that do not fit together or are out of range."""

    code = "usage_invalid"


class InputFileError(InputError):
    """A file named on the command line cannot be read or is not what it should be."""

    code = "input_file_invalid"


class NotFoundError(InputError):
    """The command names something (a version, an operation, a dead letter) that does not exist."""

    code = "not_found"


class RedriveUnconfirmedError(ServiceError):
    """The broker did not confirm a re-driven dead letter; it stays pending."""

    code = "redrive_unconfirmed"

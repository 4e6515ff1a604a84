"""The project's one error vocabulary: every error it raises on purpose is a
``MediationError`` with a stable ``code``.

The tree (each package keeps its own subclasses next to the code that raises
them; third-party errors are translated at the edge where they are met)::

    MediationError
    ├── InputError (also a ValueError): what was given is wrong; fix the input
    │   ├── SettingsError            mediation.settings         settings_invalid
    │   ├── MembershipError          mediation.membership       membership_invalid
    │   ├── WireError                mediation.wire             wire_invalid
    │   ├── ConfigError              mediation.rules.waterfall  config_invalid
    │   ├── PlanError                mediation.rules.publish    plan_invalid
    │   ├── ReplayRequestError       mediation.rules.replay     replay_request_invalid
    │   ├── ReportError              mediation.report           report_invalid
    │   ├── RefusedError             mediation.errors           refused
    │   │   ├── RequestInvalidError  mediation.rules.validation request_invalid
    │   │   ├── KeyOperationError    storage.keys               key_operation_refused
    │   │   └── PublishError         storage.configs            publish_refused
    │   ├── InvalidUlidError         mediation.rules.ulid       ulid_invalid
    │   ├── RulesBuildError          mediation.native           rules_build_invalid
    │   ├── InputFileError           mediation.cli.errors       input_file_invalid
    │   ├── UsageError               mediation.cli.errors       usage_invalid
    │   ├── NotFoundError            mediation.cli.errors       not_found
    │   ├── InvalidIdempotencyKeyError gateway.idempotency      idempotency_key_invalid
    │   ├── ApiRefusalError          gateway.errors             api_request_refused
    │   └── BodyError                gateway.http               invalid_body
    │       ├── BodyTooLargeError                               body_too_large
    │       ├── UnsupportedEncodingError                        unsupported_encoding
    │       └── InvalidGzipError                                invalid_gzip
    └── ServiceError (also a RuntimeError): a service or a step failed; retry or repair
        ├── DatabaseUnavailableError storage.db                 database_unavailable
        ├── MigrationError           storage.migrate            migration_failed
        ├── ColdStoreError           storage.cold               cold_store_failed
        ├── TieringError             storage.tiering            tiering_failed
        ├── TopicSetupError          mediation.topics           topic_setup_failed
        │   └── TopicLayoutError                                topics_not_copartitioned
        ├── ApiUnavailableError      gateway.errors             api_unavailable
        ├── ProduceFailedError       gateway.producer           produce_failed
        ├── ProduceTimeoutError      gateway.producer           produce_timeout
        ├── MetricsPortInUseError    dataflows.metrics          metrics_port_in_use
        ├── CohortsUnavailableError  mediation.ops.publish_worker cohorts_unavailable
        ├── RedriveUnconfirmedError  mediation.cli.errors       redrive_unconfirmed
        ├── DevStackError            mediation.sim.devstack     dev_stack_failed
        └── ExtraNotInstalledError   mediation.extras           extra_not_installed

``InputError`` and ``ServiceError`` keep the built-in bases the code caught
before (``ValueError``, ``RuntimeError``), so an ``except ValueError`` that
predates the tree still catches what it caught. The command line turns the
two families into exit status 2 and 1 (``mediation.cli``); the gateway turns
its own errors into the API's error shape in one handler (``gateway.errors``).

Standard library only: the rules import it.
"""

from __future__ import annotations

__all__ = ["InputError", "MediationError", "RefusedError", "ServiceError"]


class MediationError(Exception):
    """The root of every error the project raises on purpose."""

    code: str = "mediation_error"


class InputError(MediationError, ValueError):
    """What was given (a setting, a flag, a file, a request, a message) is wrong."""

    code = "input_invalid"


class ServiceError(MediationError, RuntimeError):
    """A service the project depends on, or a step it runs, failed."""

    code = "service_failed"


class RefusedError(InputError):
    """A request refused for a stated reason: the instance's ``code`` is that reason
    (``unknown_app``, ``already_published``, ...), the class keeps its own."""

    code = "refused"

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.code = reason
        self.message = message

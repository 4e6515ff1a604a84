"""Process settings: every environment variable the project reads, read here, once.

``Settings.from_env`` reads the environment at a process's start and checks
every value before anything starts: a malformed one raises ``SettingsError``
whose message is one line naming the variable, and the CLI prints it and
exits 2. No other module reads the environment (``tests/test_settings.py``
holds that); each takes its values from a ``Settings``. The variables, their
meanings and defaults are the table of ``docs/contracts.md`` section 1,
which the same test holds against this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mediation.errors import InputError
from mediation.membership import Membership, MembershipError
from mediation.rules.model import Policy
from mediation.rules.publish import STATES as PUBLISH_STATES
from mediation.rules.ulid import ulid_time_ms_unchecked

__all__ = [
    "GATEWAY_ROLES",
    "LOOPBACK_HOSTS",
    "READABLE_STORAGE_CLASSES",
    "TIER_CRASH_POINTS",
    "Settings",
    "SettingsError",
    "Topics",
    "WorkerSettings",
    "default_data_dir",
]

# The directory holding the packages: a source checkout, or site-packages
# when the project is installed from a wheel.
_PACKAGES_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/mediation"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_TOPIC_PREFIX = "mediation."
DEFAULT_AWS_REGION = "us-east-1"
# Hosts of this machine: local services (dev stack, tests) live there.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# What a gateway process may serve (``mediation api --role``, ``mediation ingest``).
GATEWAY_ROLES = frozenset({"api", "ingest"})
# S3 storage classes whose objects can be read at once (no restore): replay
# reads cold days directly, so the cold tier uses one of these.
READABLE_STORAGE_CLASSES = frozenset(
    {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"}
)
# The steps of ``mediation tier`` after which its crash drill may fire.
TIER_CRASH_POINTS = ("exported", "verified", "recorded")


class SettingsError(InputError):
    """A setting is missing or malformed; the message names the variable."""

    code = "settings_invalid"


@dataclass(frozen=True, slots=True)
class Topics:
    opportunities: str
    events: str
    deadletter: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(f"{prefix}opportunities.v1", f"{prefix}events.v1", f"{prefix}deadletter.v1")

    def all(self) -> tuple[str, str, str]:
        return (self.opportunities, self.events, self.deadletter)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def default_data_dir(
    xdg_state_home: str = "", packages_root: Path | None = None, home: Path | None = None
) -> Path:
    """Where local state goes when ``MEDIATION_DATA_DIR`` is unset.

    A source checkout (``pyproject.toml`` next to the packages) keeps it in
    ``<checkout>/.mediation``; an installed project must not write into
    site-packages, so it uses ``$XDG_STATE_HOME/mediation`` or
    ``~/.local/state/mediation`` (a relative ``XDG_STATE_HOME`` is ignored,
    as the XDG base directory specification says).
    """
    packages_root = packages_root or _PACKAGES_ROOT
    if (packages_root / "pyproject.toml").is_file():
        return packages_root / ".mediation"
    if xdg_state_home and Path(xdg_state_home).is_absolute():
        return Path(xdg_state_home) / "mediation"
    return (home or Path.home()) / ".local" / "state" / "mediation"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What ``mediation worker`` (``dataflows/worker.py``) takes from the environment."""

    policy: Policy = field(default_factory=Policy)
    # Which input partitions this process reads (``--member`` / ``--partitions``).
    membership: Membership = field(default_factory=Membership)
    # How long a partition read to its end holds its event time (dataflows/watermark.py).
    drain_settle_ms: int = 1000
    # Full garbage collection every so often; 0: Python's automatic collection.
    gc_interval_ms: int = 60_000
    # Postgres writer threads of this process (sinks/pipelined.py).
    sink_writers: int = 2
    metrics_port: int = 0  # 0: no /metrics
    metrics_host: str = "127.0.0.1"
    # Drills only: before_write:N or after_write:N (dataflows/faults.py).
    crash_at: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSettings:
        defaults = Policy()
        policy = Policy(
            default_closure_window_ms=_int(
                env, "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS", defaults.default_closure_window_ms
            ),
            default_grace_ms=_int(env, "MEDIATION_DEFAULT_GRACE_MS", defaults.default_grace_ms),
            allowed_lateness_ms=_int(
                env, "MEDIATION_ALLOWED_LATENESS_MS", defaults.allowed_lateness_ms
            ),
            tombstone_ttl_ms=_int(env, "MEDIATION_TOMBSTONE_TTL_MS", defaults.tombstone_ttl_ms),
            max_orphan_keys_per_app=_int(
                env, "MEDIATION_MAX_ORPHAN_KEYS_PER_APP", defaults.max_orphan_keys_per_app
            ),
        )
        member = _membership(env, "MEDIATION_WORKER_MEMBER", Membership.parse_member)
        partitions = _membership(env, "MEDIATION_WORKER_PARTITIONS", Membership.parse_partitions)
        host = env.get("MEDIATION_WORKER_METRICS_HOST") or ""
        if any(ch.isspace() for ch in host):
            raise SettingsError(
                f"MEDIATION_WORKER_METRICS_HOST: expected a host name or address, got {host!r}"
            )
        return cls(
            policy=policy,
            membership=partitions or member or Membership(),
            drain_settle_ms=_int(env, "MEDIATION_DRAIN_SETTLE_MS", 1000),
            gc_interval_ms=_int(env, "MEDIATION_GC_INTERVAL_MS", 60_000),
            sink_writers=max(1, _int(env, "MEDIATION_SINK_WRITERS", 2)),
            metrics_port=_port(env, "MEDIATION_WORKER_METRICS_PORT", 0, minimum=0),
            metrics_host=host or "127.0.0.1",
            crash_at=_worker_crash_point(env.get("MEDIATION_CRASH_AT") or ""),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    kafka_bootstrap_servers: str
    topic_prefix: str
    cold_storage_url: str
    data_dir: Path
    # None: admin routes answer 503 until MEDIATION_ADMIN_TOKEN is set.
    admin_token: str | None = field(default=None, repr=False)
    aws_endpoint_url: str | None = None
    # The region of the S3 cold store's clients.
    aws_region: str = DEFAULT_AWS_REGION
    # AWS_ACCESS_KEY_ID is set: the AWS SDK signs with the environment's
    # credentials. Unset, a loopback AWS_ENDPOINT_URL (the local S3 server,
    # which takes any) gets placeholder ones (storage/cold.py).
    aws_credentials_set: bool = False
    kafka_partitions: int = 4
    # How long the gateway waits for the broker to confirm before it says 503.
    produce_timeout_ms: int = 2000
    # One JSON line per HTTP request (no secrets) on the "mediation.access" logger.
    access_log: bool = False
    # Replay API requests admitted per second, across the gateway fleet.
    replay_requests_per_s: int = 5
    # A keyed request's lease on its Idempotency-Key, renewed while it lives:
    # a key whose gateway died is free again after at most this long.
    idempotency_lease_ms: int = 3000
    # How long the idempotency store may take to answer before the keyed
    # request gets 503 + Retry-After (it is never served unguarded).
    idempotency_timeout_ms: int = 250
    # A previous topic generation still being drained (adding partitions,
    # docs/operations.md): opportunities whose key's ULID time is before
    # ``previous_topics_until_ms``, and their events, go to its topics.
    previous_topic_prefix: str | None = None
    previous_topics_until_ms: int = 0
    # The level of the root logger of gateway and worker processes.
    log_level: str = "INFO"
    # Which build of the rules runs (auto, compiled, interpreted). It acts when
    # ``mediation`` is first imported (mediation/native.py reads it there,
    # before settings exist); read here too so a bad value is one settings error.
    rules_build: str = "auto"  # mediation.native.DEFAULT_BUILD
    # What this gateway process serves (set by ``mediation api --role``).
    gateway_roles: frozenset[str] = GATEWAY_ROLES
    # S3 storage class of the cold tier (the default of ``mediation tier --cold-storage-class``).
    cold_storage_class: str = "STANDARD_IA"
    # Cores of the Postgres host, for ``mediation status``'s triggers; 0: this machine's.
    db_cpus: int = 0
    # The port of the local connection pooler (``mediation dev``).
    pooler_port: int = 6432
    # Drills only: SIGKILL ``mediation tier`` right after this step of its first day.
    tier_crash_after: str | None = None
    # Drills only: SIGKILL the publish worker after entering STATE[:STAGE].
    publish_crash_after: str | None = None
    worker: WorkerSettings = field(default_factory=WorkerSettings)

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)

    def topics_for(self, opportunity_key: str) -> Topics:
        """The topic generation of an opportunity and its events (by the key's ULID time)."""
        if (
            self.previous_topic_prefix is not None
            and ulid_time_ms_unchecked(opportunity_key) < self.previous_topics_until_ms
        ):
            return Topics.with_prefix(self.previous_topic_prefix)
        return self.topics

    @property
    def database_url_redacted(self) -> str:
        return _redact(self.database_url)

    def child_env(self) -> dict[str, str]:
        """This process's environment, with these settings' addresses, for a child process."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
                "KAFKA_TOPIC_PREFIX": self.topic_prefix,
                "MEDIATION_DATA_DIR": str(self.data_dir),
                "COLD_STORAGE_URL": self.cold_storage_url,
            }
        )
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        env.pop("SUPABASE_DB_URL", None)  # it would win over DATABASE_URL
        return env

    def __repr__(self) -> str:  # secrets never appear in repr
        return (
            f"Settings(database={self.database_url_redacted!r}, "
            f"kafka={self.kafka_bootstrap_servers!r}, topic_prefix={self.topic_prefix!r}, "
            f"cold_storage={self.cold_storage_url!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        supabase_url = env.get("SUPABASE_DB_URL") or ""
        database_url = supabase_url or env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        name = "SUPABASE_DB_URL" if supabase_url else "DATABASE_URL"
        if urlsplit(database_url).scheme not in ("postgresql", "postgres"):
            raise SettingsError(
                f"{name}: expected a postgresql:// URL, got scheme "
                f"{urlsplit(database_url).scheme!r}"
            )
        redis_url = env.get("REDIS_URL") or DEFAULT_REDIS_URL
        if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError("REDIS_URL: expected a redis:// or rediss:// URL")
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_KAFKA
        for broker in kafka.split(","):
            host, _, port = broker.strip().rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(
                    f"KAFKA_BOOTSTRAP_SERVERS: expected host:port[,host:port], got {kafka!r}"
                )
        prefix = env.get("KAFKA_TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX)
        if any(ch not in _TOPIC_CHARS for ch in prefix):
            raise SettingsError(f"KAFKA_TOPIC_PREFIX: only [A-Za-z0-9._-] allowed, got {prefix!r}")
        data_dir_raw = env.get("MEDIATION_DATA_DIR") or ""
        xdg_state_home = env.get("XDG_STATE_HOME") or ""
        data_dir = Path(data_dir_raw or default_data_dir(xdg_state_home)).resolve()
        cold = env.get("COLD_STORAGE_URL") or (data_dir / "cold").as_uri()
        scheme = urlsplit(cold).scheme
        if scheme not in ("s3", "file") or (scheme == "s3" and not urlsplit(cold).netloc):
            raise SettingsError(
                f"COLD_STORAGE_URL: expected s3://bucket/prefix or file:///abs/path, got {cold!r}"
            )
        token = env.get("MEDIATION_ADMIN_TOKEN") or ""
        if token and len(token) < 16:
            raise SettingsError("MEDIATION_ADMIN_TOKEN: must be at least 16 characters")
        endpoint = env.get("AWS_ENDPOINT_URL") or ""
        if endpoint and (
            urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc
        ):
            raise SettingsError(
                f"AWS_ENDPOINT_URL: expected http(s)://host[:port], got {endpoint!r}"
            )
        region = env.get("AWS_REGION") or DEFAULT_AWS_REGION
        if not all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in region):
            raise SettingsError(f"AWS_REGION: expected a region like eu-west-1, got {region!r}")
        previous_prefix, previous_until = _previous_generation(
            env.get("MEDIATION_PREVIOUS_TOPIC_PREFIX") or "", prefix
        )
        access_log = env.get("MEDIATION_ACCESS_LOG") or "0"
        if access_log not in ("0", "1"):
            raise SettingsError(f"MEDIATION_ACCESS_LOG: expected 0 or 1, got {access_log!r}")
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            kafka_bootstrap_servers=kafka,
            topic_prefix=prefix,
            cold_storage_url=cold,
            data_dir=data_dir,
            admin_token=token or None,
            aws_endpoint_url=endpoint or None,
            aws_region=region,
            aws_credentials_set=bool(env.get("AWS_ACCESS_KEY_ID")),
            kafka_partitions=_int(env, "MEDIATION_KAFKA_PARTITIONS", 4, minimum=1),
            produce_timeout_ms=_int(env, "MEDIATION_PRODUCE_TIMEOUT_MS", 2000, minimum=50),
            access_log=access_log == "1",
            replay_requests_per_s=_int(env, "MEDIATION_REPLAY_REQUESTS_PER_S", 5, minimum=1),
            idempotency_lease_ms=_int(env, "MEDIATION_IDEMPOTENCY_LEASE_MS", 3000, minimum=300),
            idempotency_timeout_ms=_int(env, "MEDIATION_IDEMPOTENCY_TIMEOUT_MS", 250, minimum=10),
            previous_topic_prefix=previous_prefix,
            previous_topics_until_ms=previous_until,
            log_level=_log_level(env.get("MEDIATION_LOG_LEVEL", "INFO")),
            rules_build=_rules_build(env.get("MEDIATION_RULES_BUILD") or "interpreted"),
            gateway_roles=_gateway_roles(env.get("MEDIATION_GATEWAY_ROLES") or "all"),
            cold_storage_class=_cold_storage_class(
                env.get("MEDIATION_COLD_STORAGE_CLASS") or "STANDARD_IA"
            ),
            db_cpus=_int(env, "MEDIATION_DB_CPUS", 0),
            # Empty is refused: the dev stack starts the pooler on this port.
            pooler_port=_port(
                env, "MEDIATION_POOLER_PORT", 6432, minimum=1, empty_is_default=False
            ),
            tier_crash_after=_tier_crash_point(env.get("MEDIATION_TIER_CRASH_AFTER") or ""),
            publish_crash_after=_publish_crash_point(
                env.get("MEDIATION_PUBLISH_CRASH_AFTER") or ""
            ),
            worker=WorkerSettings.from_env(env),
        )


# -- checks, each accepting exactly what the setting's user can take ----------


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _digits(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """A plain decimal integer (no sign, spaces or unit); unset or empty: ``default``."""
    raw = env.get(name) or ""
    if not raw:
        return default
    if not _digits(raw):
        what = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise SettingsError(f"{name}: expected {what}, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _port(
    env: Mapping[str, str], name: str, default: int, minimum: int, empty_is_default: bool = True
) -> int:
    raw = env.get(name)
    if raw is None or (raw == "" and empty_is_default):
        return default
    if not _digits(raw) or not minimum <= int(raw) <= 65535:
        raise SettingsError(f"{name}: expected a port {minimum}..65535, got {raw!r}")
    return int(raw)


def _membership(
    env: Mapping[str, str], name: str, parse: Callable[[str], Membership]
) -> Membership | None:
    raw = env.get(name) or ""
    if not raw:
        return None
    try:
        return parse(raw)
    except MembershipError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _log_level(raw: str) -> str:
    # logging.basicConfig(level=...) takes exactly these names (upper case; not empty).
    names = logging.getLevelNamesMapping()
    if raw not in names:
        raise SettingsError(
            f"MEDIATION_LOG_LEVEL: expected one of {', '.join(sorted(names))}, got {raw!r}"
        )
    return raw


# mediation/native.py's BUILDS (tests/rules/test_compiled_build.py holds them equal).
RULES_BUILDS = ("auto", "compiled", "interpreted")


def _rules_build(raw: str) -> str:
    if raw not in RULES_BUILDS:
        raise SettingsError(
            f"MEDIATION_RULES_BUILD: expected one of {', '.join(RULES_BUILDS)}, got {raw!r}"
        )
    return raw


def _gateway_roles(raw: str) -> frozenset[str]:
    if raw == "all":
        return GATEWAY_ROLES
    roles = frozenset(role.strip() for role in raw.split(","))
    if not roles <= GATEWAY_ROLES:
        raise SettingsError(
            f"MEDIATION_GATEWAY_ROLES: expected all or a list of "
            f"{', '.join(sorted(GATEWAY_ROLES))}, got {raw!r}"
        )
    return roles


def _cold_storage_class(raw: str) -> str:
    if raw not in READABLE_STORAGE_CLASSES:
        raise SettingsError(
            f"MEDIATION_COLD_STORAGE_CLASS: expected one of "
            f"{', '.join(sorted(READABLE_STORAGE_CLASSES))} (replay reads cold days directly), "
            f"got {raw!r}"
        )
    return raw


def _worker_crash_point(raw: str) -> str | None:  # dataflows/faults.py
    when, _, batch = raw.partition(":")
    if raw and (
        when not in ("before_write", "after_write") or not _digits(batch) or int(batch) < 1
    ):
        raise SettingsError(
            f"MEDIATION_CRASH_AT: expected before_write:N or after_write:N, got {raw!r}"
        )
    return raw or None


def _tier_crash_point(raw: str) -> str | None:  # storage/tier_job.py
    if raw and raw not in TIER_CRASH_POINTS:
        raise SettingsError(
            f"MEDIATION_TIER_CRASH_AFTER: expected one of {', '.join(TIER_CRASH_POINTS)}, "
            f"got {raw!r}"
        )
    return raw or None


def _publish_crash_point(raw: str) -> str | None:  # mediation/ops/publish_worker.py
    state, sep, stage = raw.partition(":")
    if raw and (state not in PUBLISH_STATES or (sep and not _digits(stage))):
        raise SettingsError(
            "MEDIATION_PUBLISH_CRASH_AFTER: expected STATE[:STAGE] with STATE one of "
            f"{', '.join(PUBLISH_STATES)}, got {raw!r}"
        )
    return raw or None


def _previous_generation(raw: str, prefix: str) -> tuple[str | None, int]:
    """``MEDIATION_PREVIOUS_TOPIC_PREFIX``: ``<prefix>@<epoch ms>``, or empty for none."""
    if not raw:
        return None, 0
    previous, sep, until = raw.rpartition("@")
    if not sep or not _digits(until) or any(ch not in _TOPIC_CHARS for ch in previous):
        raise SettingsError(
            "MEDIATION_PREVIOUS_TOPIC_PREFIX: expected <topic prefix>@<epoch ms> "
            f"(for instance mediation.@1767225600000), got {raw!r}"
        )
    if previous == prefix:
        raise SettingsError(
            f"MEDIATION_PREVIOUS_TOPIC_PREFIX: {previous!r} is KAFKA_TOPIC_PREFIX itself"
        )
    return previous, int(until)

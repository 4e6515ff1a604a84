"""Process settings, read from the environment once, in the entry point.

Every process reads only the variables of ``docs/contracts.md`` section 1
(plus a few local-run knobs prefixed ``MEDIATION_``). A missing or malformed
value raises ``SettingsError`` whose message is one line naming the
variable; the CLI prints it and exits 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mediation.errors import InputError
from mediation.rules.publish import STATES as PUBLISH_STATES
from mediation.rules.ulid import ulid_time_ms_unchecked

__all__ = [
    "CHECKED_ELSEWHERE",
    "LOOPBACK_HOSTS",
    "PROCESS_KNOBS",
    "PROJECT_ROOT",
    "Settings",
    "SettingsError",
    "Topics",
    "check_process_knobs",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/mediation"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_TOPIC_PREFIX = "mediation."
# Hosts of this machine: local services (dev stack, tests) live there.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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
        database_url = env.get("SUPABASE_DB_URL") or env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        name = "SUPABASE_DB_URL" if env.get("SUPABASE_DB_URL") else "DATABASE_URL"
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
        data_dir = Path(env.get("MEDIATION_DATA_DIR") or PROJECT_ROOT / ".mediation").resolve()
        cold = env.get("COLD_STORAGE_URL") or (data_dir / "cold").as_uri()
        scheme = urlsplit(cold).scheme
        if scheme not in ("s3", "file") or (scheme == "s3" and not urlsplit(cold).netloc):
            raise SettingsError(
                f"COLD_STORAGE_URL: expected s3://bucket/prefix or file:///abs/path, got {cold!r}"
            )
        token = env.get("MEDIATION_ADMIN_TOKEN") or ""
        if token and len(token) < 16:
            raise SettingsError("MEDIATION_ADMIN_TOKEN: must be at least 16 characters")
        partitions = _int(env, "MEDIATION_KAFKA_PARTITIONS", 4, minimum=1)
        produce_timeout = _int(env, "MEDIATION_PRODUCE_TIMEOUT_MS", 2000, minimum=50)
        replay_rate = _int(env, "MEDIATION_REPLAY_REQUESTS_PER_S", 5, minimum=1)
        idempotency_lease = _int(env, "MEDIATION_IDEMPOTENCY_LEASE_MS", 3000, minimum=300)
        idempotency_timeout = _int(env, "MEDIATION_IDEMPOTENCY_TIMEOUT_MS", 250, minimum=10)
        endpoint = env.get("AWS_ENDPOINT_URL") or ""
        if endpoint and (
            urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc
        ):
            raise SettingsError(
                f"AWS_ENDPOINT_URL: expected http(s)://host[:port], got {endpoint!r}"
            )
        previous_prefix, previous_until = _previous_generation(
            env.get("MEDIATION_PREVIOUS_TOPIC_PREFIX") or "", prefix
        )
        access_log = env.get("MEDIATION_ACCESS_LOG") or "0"
        if access_log not in ("0", "1"):
            raise SettingsError(f"MEDIATION_ACCESS_LOG: expected 0 or 1, got {access_log!r}")
        check_process_knobs(env)
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            kafka_bootstrap_servers=kafka,
            topic_prefix=prefix,
            cold_storage_url=cold,
            data_dir=data_dir,
            admin_token=token or None,
            aws_endpoint_url=endpoint or None,
            kafka_partitions=partitions,
            produce_timeout_ms=produce_timeout,
            access_log=access_log == "1",
            replay_requests_per_s=replay_rate,
            idempotency_lease_ms=idempotency_lease,
            idempotency_timeout_ms=idempotency_timeout,
            previous_topic_prefix=previous_prefix,
            previous_topics_until_ms=previous_until,
        )


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


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum}, got {value}")
    return value


# -- knobs other modules read -----------------------------------------------------
#
# The worker's policy and threads, the gateway's log level, the drills: each
# is read where it is used (often in a child process, after ``bytewax.run`` or
# uvicorn took over), where a bad value used to end in a traceback or, with
# several gateway processes, a crash loop. ``Settings.from_env`` checks every
# one of them at start, so each entry point stops first with one line naming
# the variable. Each check accepts no more than the reader does.


def _digits(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()


def _non_negative_integer(name: str, raw: str) -> None:
    # The worker's readers take digits only: no sign, no spaces, no "5s";
    # empty means the default.
    if raw and not _digits(raw):
        raise SettingsError(f"{name}: expected a non-negative integer, got {raw!r}")


def _port(name: str, raw: str) -> None:
    # Its reader (int(...)) refuses an empty value too.
    if not _digits(raw) or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name}: expected a port 1..65535, got {raw!r}")


def _log_level(name: str, raw: str) -> None:
    # logging.basicConfig(level=...) takes exactly these names (upper case; not empty).
    names = logging.getLevelNamesMapping()
    if raw not in names:
        raise SettingsError(f"{name}: expected one of {', '.join(sorted(names))}, got {raw!r}")


def _host(name: str, raw: str) -> None:
    if any(ch.isspace() for ch in raw):  # empty: loopback
        raise SettingsError(f"{name}: expected a host name or address, got {raw!r}")


def _one_of(*choices: str) -> Callable[[str, str], None]:
    def check(name: str, raw: str) -> None:
        if raw and raw not in choices:  # empty: off
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")

    return check


def _worker_crash_point(name: str, raw: str) -> None:  # dataflows/faults.py
    when, _, batch = raw.partition(":")
    if raw and (
        when not in ("before_write", "after_write") or not _digits(batch) or int(batch) < 1
    ):
        raise SettingsError(f"{name}: expected before_write:N or after_write:N, got {raw!r}")


def _membership(parse_name: str) -> Callable[[str, str], None]:  # mediation/membership.py
    def check(name: str, raw: str) -> None:
        from mediation.membership import Membership, MembershipError

        try:
            if raw:
                getattr(Membership, parse_name)(raw)
        except MembershipError as exc:
            raise SettingsError(f"{name}: {exc}") from None

    return check


def _publish_crash_point(name: str, raw: str) -> None:  # mediation/ops/publish_worker.py
    state, sep, stage = raw.partition(":")
    if raw and (state not in PUBLISH_STATES or (sep and not _digits(stage))):
        raise SettingsError(
            f"{name}: expected STATE[:STAGE] with STATE one of {', '.join(PUBLISH_STATES)}, "
            f"got {raw!r}"
        )


PROCESS_KNOBS: Mapping[str, Callable[[str, str], None]] = {
    # dataflows/worker.py
    "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": _non_negative_integer,
    "MEDIATION_DEFAULT_GRACE_MS": _non_negative_integer,
    "MEDIATION_ALLOWED_LATENESS_MS": _non_negative_integer,
    "MEDIATION_TOMBSTONE_TTL_MS": _non_negative_integer,
    "MEDIATION_MAX_ORPHAN_KEYS_PER_APP": _non_negative_integer,
    "MEDIATION_DRAIN_SETTLE_MS": _non_negative_integer,
    "MEDIATION_GC_INTERVAL_MS": _non_negative_integer,
    "MEDIATION_SINK_WRITERS": _non_negative_integer,
    "MEDIATION_WORKER_METRICS_PORT": _non_negative_integer,
    "MEDIATION_WORKER_METRICS_HOST": _host,
    "MEDIATION_WORKER_MEMBER": _membership("parse_member"),
    "MEDIATION_WORKER_PARTITIONS": _membership("parse_partitions"),
    "MEDIATION_CRASH_AT": _worker_crash_point,
    # gateway/asgi.py and dataflows/worker.py
    "MEDIATION_LOG_LEVEL": _log_level,
    # mediation/ops/status.py (0: this machine's core count)
    "MEDIATION_DB_CPUS": _non_negative_integer,
    # mediation/sim/devstack.py
    "MEDIATION_POOLER_PORT": _port,
    # storage/tier_job.py (drills only)
    "MEDIATION_TIER_CRASH_AFTER": _one_of("exported", "verified", "recorded"),
    # mediation/ops/publish_worker.py (drills only)
    "MEDIATION_PUBLISH_CRASH_AFTER": _publish_crash_point,
}

# Not checked here: each is the default or the carrier of a command's flag, and
# that command checks it with the flag, before it starts anything (exit 2).
CHECKED_ELSEWHERE = {
    "MEDIATION_GATEWAY_ROLES": "set by `mediation api --role` and `mediation ingest`",
    "MEDIATION_COLD_STORAGE_CLASS": "the default of `mediation tier --cold-storage-class`",
}


def check_process_knobs(env: Mapping[str, str]) -> None:
    """Raise ``SettingsError`` for the first malformed knob of ``PROCESS_KNOBS``; unset is fine."""
    for name, check in PROCESS_KNOBS.items():
        raw = env.get(name)
        if raw is not None:  # unset: the reader's default (what empty means, each check says)
            check(name, raw)

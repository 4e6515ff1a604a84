"""Static checks of ``docker-compose.yml`` and the ``Dockerfile``.

Docker does not run on our machines, so the production-like stack is checked
here against the code it starts: every app service's command must parse with
the ``mediation`` CLI, its environment must satisfy ``Settings.from_env``, the
Bytewax cluster must be consistent, and every dependency must exist.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediation.cli.parser import build_parser
from mediation.settings import Settings, Topics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

INFRASTRUCTURE = ("kafka", "postgres", "redis", "minio")
REQUIRED_APP_ENV = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


@cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml must be a mapping"
    return document


def _services() -> dict[str, dict[str, Any]]:
    services = _compose().get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml has no services"
    return services


def _project_images() -> set[str]:
    return {s["image"] for s in _services().values() if "build" in s and "image" in s}


def _is_app(service: dict[str, Any]) -> bool:
    return "build" in service or service.get("image") in _project_images()


def _app_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if _is_app(s)}


def _argv(name: str, service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), (
        f"{name}: command must be a list (the argv after the `mediation` ENTRYPOINT)"
    )
    assert all(isinstance(arg, str) for arg in command), f"{name}: every argument must be a string"
    return command


def _parse(name: str, argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of saying "no such command or option"
        pytest.fail(f"{name}: `mediation {shlex.join(argv)}` does not parse (exit {exc.code})")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _interpolate(value: str) -> str:
    """Compose's variable substitution with nothing set in the environment."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op in ("-", ":-"):
            return arg
        if op in ("?", ":?"):
            return f"compose-test-value-for-{name.lower()}"
        return ""

    return _INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: (spec or {}) for name, spec in deps.items()}


def _workers() -> dict[str, Any]:
    return {
        name: _parse(name, _argv(name, s))
        for name, s in _app_services().items()
        if _argv(name, s)[0] == "worker"
    }


def _dockerfile_instruction(keyword: str) -> list[str]:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    return [line.split(None, 1)[1] for line in lines if line.upper().startswith(keyword + " ")]


def test_the_stack_runs_the_project_image_for_api_ingest_migrate_and_workers() -> None:
    apps = _app_services()
    commands = {_argv(name, s)[0] for name, s in apps.items()}
    assert {"api", "ingest", "migrate", "worker"} <= commands
    assert len(_project_images()) == 1, "all app services share one image"


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_every_app_service_command_exists_in_the_cli(name: str) -> None:
    argv = _argv(name, _services()[name])
    args = _parse(name, argv)
    assert args.command == argv[0]


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_every_app_service_gets_the_shared_settings_from_its_environment(name: str) -> None:
    env = _environment(_services()[name])
    missing = [var for var in REQUIRED_APP_ENV if not env.get(var)]
    assert not missing, f"{name}: environment lacks {missing}"


@pytest.mark.parametrize("name", sorted(_app_services()))
def test_every_app_service_environment_is_accepted_by_settings(name: str) -> None:
    env = {k: _interpolate(v) for k, v in _environment(_services()[name]).items()}
    settings = Settings.from_env(env)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.cold_storage_url.startswith("s3://")
    assert settings.admin_token, f"{name}: MEDIATION_ADMIN_TOKEN must be set"


def test_the_admin_token_must_be_supplied_rather_than_defaulted() -> None:
    for name, service in _app_services().items():
        raw = _environment(service).get("MEDIATION_ADMIN_TOKEN", "")
        match = _INTERPOLATION.fullmatch(raw)
        assert match and match["op"] in ("?", ":?"), (
            f"{name}: MEDIATION_ADMIN_TOKEN must be ${{MEDIATION_ADMIN_TOKEN:?...}}, got {raw!r}"
        )


@pytest.mark.parametrize("name", INFRASTRUCTURE)
def test_every_infrastructure_service_has_a_healthcheck(name: str) -> None:
    service = _services().get(name)
    assert service is not None, f"the stack has no {name} service"
    healthcheck = service.get("healthcheck")
    assert healthcheck and healthcheck.get("test"), f"{name}: no healthcheck"
    assert not healthcheck.get("disable"), f"{name}: healthcheck disabled"


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    env = _environment(_services()["kafka"])
    assert "broker" in env.get("KAFKA_PROCESS_ROLES", "")
    assert "controller" in env.get("KAFKA_PROCESS_ROLES", "")
    assert "zookeeper" not in _services()


def test_every_topic_the_pipeline_uses_is_created_before_the_app_starts() -> None:
    services = _services()
    prefix = _environment(next(iter(_app_services().values())))["KAFKA_TOPIC_PREFIX"]
    creators = [
        name
        for name, s in services.items()
        if not _is_app(s) and "kafka-topics.sh" in json.dumps(s.get("command"))
    ]
    assert creators, "no service creates the Kafka topics"
    script = " ".join(json.dumps(services[name].get("command")) for name in creators)
    for topic in Topics.with_prefix(prefix).all():
        assert f"--topic {topic} " in script, f"topic {topic} is not created"
    for name, service in _app_services().items():
        if _argv(name, service)[0] in ("api", "ingest", "worker"):
            deps = _depends_on(service)
            assert any(
                deps.get(c, {}).get("condition") == "service_completed_successfully"
                for c in creators
            ), f"{name} may start before the topics exist"


def test_long_running_app_services_wait_for_migrations() -> None:
    migrators = {n for n, s in _app_services().items() if _argv(n, s)[0] == "migrate"}
    assert migrators
    for name, service in _app_services().items():
        if _argv(name, service)[0] in ("api", "ingest", "worker"):
            conditions = {
                spec.get("condition")
                for dep, spec in _depends_on(service).items()
                if dep in migrators
            }
            assert conditions == {"service_completed_successfully"}, (
                f"{name} must start after `mediation migrate` completed"
            )


def test_every_depends_on_target_exists() -> None:
    services = _services()
    for name, service in services.items():
        for dep in _depends_on(service):
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name, f"{name} depends on itself"


def test_every_healthy_dependency_defines_a_healthcheck() -> None:
    services = _services()
    for name, service in services.items():
        for dep, spec in _depends_on(service).items():
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                )


def test_the_api_is_ready_only_when_its_readiness_endpoint_answers() -> None:
    for name, service in _app_services().items():
        if _argv(name, service)[0] == "api":
            test = json.dumps(service.get("healthcheck", {}).get("test"))
            assert "/readyz" in test, f"{name}: healthcheck must probe /readyz"


def test_worker_members_cover_every_partition_once() -> None:
    from mediation.membership import Membership

    workers = _workers()
    assert len(workers) >= 2, "the stack runs several worker members"
    members = [Membership.parse_member(args.member) for args in workers.values()]
    assert {member.count for member in members} == {len(workers)}, "every member says N"
    (_name, worker) = next(iter(_app_services().items()))
    partitions = int(_interpolate(_environment(worker)["MEDIATION_KAFKA_PARTITIONS"]))
    owned = sorted(p for member in members for p in member.owned(partitions))
    assert owned == list(range(partitions)), "each partition owned by exactly one member"


def test_prometheus_scrapes_every_worker_member() -> None:
    text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    for name in _workers():
        assert f"{name}:9464" in text, f"{name} is not scraped"


def test_every_worker_keeps_its_recovery_state_in_its_own_volume() -> None:
    workers = _workers()
    sources: list[str] = []
    for name, args in workers.items():
        assert args.recovery_directory, f"{name}: runs without a recovery directory"
        mounts = [
            str(v).split(":") for v in _services()[name].get("volumes", []) if isinstance(v, str)
        ]
        source = [m[0] for m in mounts if len(m) >= 2 and m[1] == args.recovery_directory]
        assert source, f"{name}: nothing is mounted on {args.recovery_directory}"
        assert source[0] in (_compose().get("volumes") or {}), f"{name}: not a named volume"
        sources.append(source[0])
    assert len(set(sources)) == len(sources), "workers must not share a recovery volume"


def test_the_dockerfile_runs_mediation_as_an_unprivileged_user() -> None:
    assert DOCKERFILE.is_file()
    entrypoints = _dockerfile_instruction("ENTRYPOINT")
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["mediation"]
    users = _dockerfile_instruction("USER")
    assert users and users[-1].strip() not in ("root", "0"), "the image must not run as root"
    assert _dockerfile_instruction("FROM")[0].startswith("python:3.11-slim")


def test_the_image_keeps_the_migrations_next_to_the_storage_package() -> None:
    copies = [c.split() for c in _dockerfile_instruction("COPY")]
    workdir = _dockerfile_instruction("WORKDIR")[-1].strip()
    destinations = {c[0]: c[-1] for c in copies if len(c) == 2}
    assert destinations.get("sql") in ("./sql", f"{workdir}/sql")
    assert destinations.get("storage") in ("./storage", f"{workdir}/storage")
    runs = " ".join(_dockerfile_instruction("RUN"))
    assert "pip install -e ." in runs, "an editable install keeps the packages next to sql/"


def _seconds(duration: str) -> float:
    """A compose duration (``30s``, ``1m30s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def test_every_worker_gets_the_documented_stop_grace_period() -> None:
    from dataflows.stopping import STOP_GRACE_S

    for name in _workers():
        grace = _services()[name].get("stop_grace_period")
        assert grace is not None, f"{name}: no stop_grace_period (docker's default is 10 s)"
        assert _seconds(str(grace)) == STOP_GRACE_S, (
            f"{name}: stop_grace_period {grace} is not the worker's grace of {STOP_GRACE_S} s "
            "(dataflows/stopping.py, docs/operations.md)"
        )
